"""Each party acts only with its own key, and the order's parties are drawn by the chain.

A host is a network (chain, store) with its own keystore: the embedded devnet's home holds every
party's keys, a stranger's host holds none of them. Every stage a party signs must refuse to run
on a host that does not hold that party's key, naming the party, before it stores or sends anything.
"""

import dataclasses

import pytest
from contracts.client import UnknownOrderError
from privacy.identity import Keystore

from bahen.network import NoKeyError, connect
from bahen.parties import CLIENT
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from tasks.audit import audit
from tasks.encrypt_upload import encrypt_upload
from tasks.score import score
from tasks.shard import NoCapacityError, check_capacity, shard
from tasks.train import train
from tasks.verify import verify

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)


def _stranger_host(net, tmp_path):
    """The same chain and store, seen from a host whose keystore holds none of the order's parties."""
    return dataclasses.replace(net, keystore=Keystore(tmp_path / "stranger-keys", "pass", scrypt_n=2**10), _identities={})


def _fresh_network(tmp_path):
    """An embedded devnet of its own: the parties this test stakes reach no other test's orders."""
    return connect(load_settings(home=tmp_path / "home", scrypt_n=2**10))


def test_the_chain_draws_the_orders_members_and_never_the_client(tmp_path):
    net = _fresh_network(tmp_path)
    client = net.party(CLIENT)
    stake = net.market.required_stake(1_000)
    # staked as a worker with fifty times anyone's stake: a client's pick would take it, the draw never does
    net.chain.fund(client.address, 50 * stake)
    net.market.register_worker(client.account, x25519_public=client.x25519_public, declared_gflops=1_000, stake=50 * stake)
    every_validator = SMALL.model_copy(update={"validators": len(net.market.members("validator"))})
    upload = encrypt_upload(every_validator, net, salt="0x" + "d1" * 32)

    plan = shard(every_validator, upload, net)

    view = net.market.order(bytes.fromhex(upload.order_id[2:]))
    registry = [m.address for m in net.market.members("worker")]
    [assignment] = plan.assignments
    assert assignment.address == view.tasks[0].worker != client.address
    assert assignment.worker == f"worker-{registry.index(assignment.address)}"
    assert [v.address for v in plan.validators] == [v.validator for v in view.validators]
    assert sorted(v.address for v in plan.validators) == sorted(m.address for m in net.market.members("validator"))

    too_many = SMALL.model_copy(update={"validators": len(plan.validators) + 1})
    refused = encrypt_upload(too_many, net, salt="0x" + "d2" * 32)
    with pytest.raises(NoCapacityError, match=f"needs {len(plan.validators) + 1} staked validator.*has {len(plan.validators)} it may draw"):
        shard(too_many, refused, net)
    with pytest.raises(UnknownOrderError):  # refused before any escrow moved
        net.market.order(bytes.fromhex(refused.order_id[2:]))


def test_capacity_counts_only_the_workers_whose_stake_covers_the_task(tmp_path):
    net = _fresh_network(tmp_path)
    client = net.party(CLIENT).address
    workers = net.market.members("worker")
    bps = net.market.params().stake_coverage_bps
    largest = max(m.stake for m in workers)
    covered = largest * 10_000 // bps  # the largest payment the best-staked worker covers, exactly
    check_capacity(net, 1, "worker", client=client, payment=covered)
    with pytest.raises(NoCapacityError, match=rf"needs 1 staked worker.*has 0 it may draw \({len(workers)} more hold less stake"):
        check_capacity(net, 1, "worker", client=client, payment=covered + 10_000 // bps + 1)
    with pytest.raises(NoCapacityError, match=f"needs {len(workers) + 1} staked worker.*has {len(workers)} it may draw:"):
        check_capacity(net, len(workers) + 1, "worker", client=client)


def test_a_host_without_the_signers_key_refuses_each_stage_before_acting(tmp_path):
    net = _fresh_network(tmp_path)
    upload = encrypt_upload(SMALL, net, salt="0x" + "5e" * 32)
    plan = shard(SMALL, upload, net)
    assignment = plan.assignments[0]
    stranger = _stranger_host(net, tmp_path)
    oid = bytes.fromhex(upload.order_id[2:])

    with pytest.raises(NoKeyError, match=f"holds no key of worker {assignment.address}: run the command on the worker's host"):
        train(SMALL, upload, assignment, stranger)
    assert net.market.order(oid).tasks[0].commit_block == 0 and stranger.keystore.names() == []

    training = train(SMALL, upload, assignment, net)
    first = plan.validators[0].address
    with pytest.raises(NoKeyError, match=f"holds no key of validator {first}"):
        verify(SMALL, upload, plan, assignment, training, stranger)
    with pytest.raises(NoKeyError, match=f"holds no key of validator {first}"):
        score(SMALL, upload, plan, training, stranger)
    verify(SMALL, upload, plan, assignment, training, net)
    score(SMALL, upload, plan, training, net)
    with pytest.raises(NoKeyError, match="holds no key with the Wasp role of market"):
        audit(upload, plan, assignment, training, stranger)
    assert net.market.order(oid).tasks[0].verdict == "none"
    assert stranger.keystore.names() == []  # refusing never creates a key


def test_a_partys_runs_leave_their_results_in_its_own_folder_and_a_host_names_only_its_own_party(prefect, tmp_path):
    from prefect.blocks.core import Block
    from prefect.settings import PREFECT_API_URL

    from bahen.devnet_services import DevnetError
    from bahen.devnet_up import start_command
    from privacy.identity import Identity

    worker, other = Identity.generate("worker-9"), Identity.generate("worker-8")
    settings = load_settings(home=tmp_path, prefect_api_url=PREFECT_API_URL.value(), store_party=worker.address)
    argv, env = start_command(settings, worker, "worker", 1)
    assert argv[argv.index("--pool") + 1] == "gpu" and argv[argv.index("--work-queue") + 1] == worker.address.lower()
    slug = env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"]
    assert slug == f"local-file-system/bahen-results-{worker.address.lower()}"
    assert Block.load(slug).basepath == str(tmp_path / "store" / "prefect-results" / worker.address.lower())
    _, env = start_command(settings.model_copy(update={"store_party": None}), worker, "worker", 1)
    assert "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK" not in env  # the server's default, shared folder
    with pytest.raises(DevnetError, match=f"store_party {worker.address} is not the account of worker-8"):
        start_command(settings, other, "worker", 1)

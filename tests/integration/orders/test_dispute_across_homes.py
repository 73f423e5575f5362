"""A dispute across homes, on a real chain node: the worker of a falsely rejected task and the resolvers
the chain draws each run ``bahen dispute`` in a process of its own, from a home holding only its own
key and knowing only the order id; an auditor's home with no key at all follows the dispute.

The order itself runs in this process from an operator's home that holds every party's key (as the
embedded devnet does), with the verifier signing the opposite of what its re-execution found; each
party's home then gets a copy of its own keystore file and nothing else of anyone's.
"""

import os
import shutil
import subprocess
import sys

import pytest
import yaml
from contracts.chain import Chain

from bahen import devnet
from bahen.network import connect, keystore_of, save_addresses
from bahen.parties import validator_name
from bahen.settings import Settings
from tasks.settle import settle
from tests.anvil import anvil  # noqa: F401
from tests.flows.test_disputes import _falsely_rejected

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VALIDATORS = 6  # two for the order, four outside it to draw the three resolvers from


def _bahen(home, *args) -> subprocess.CompletedProcess:
    """``bahen ARGS`` in a process of its own, configured by ``home`` alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAHEN_", "PREFECT_"))}
    env |= {"BAHEN_HOME": str(home), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "bahen.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_worker_and_the_drawn_resolvers_each_from_their_own_home_overturn_a_false_rejection(
        anvil, tmp_path):  # noqa: F811
    config = {"chain_rpc_url": anvil, "store_url": str(tmp_path / "store"), "scrypt_n": 2**12}
    operator = Settings(home=tmp_path / "operator", **config)
    market = devnet.bootstrap(Chain.connect(anvil), keystore_of(operator), validators=VALIDATORS)
    save_addresses(operator, market.addresses)
    net = connect(operator)

    def home(name: str | None, folder: str):
        """A party's home: the network's services in config.yaml, its own identity (none for an auditor)."""
        settings = Settings(home=tmp_path / "parties" / folder, **config)
        settings.keys_dir.mkdir(parents=True)
        (settings.home / "config.yaml").write_text(yaml.safe_dump(config))
        save_addresses(settings, market.addresses)
        if name is not None:
            shutil.copy(keystore_of(operator).root / f"{name}.json", settings.keys_dir)
        return settings.home

    upload, plan, assignment, training, _ = _falsely_rejected(net, "0x" + "dc" * 32)
    order_id, oid = upload.order_id, bytes.fromhex(upload.order_id[2:])
    worker = net.party_at(assignment.address, role="worker")
    validators = {net.party(validator_name(i)).address: validator_name(i) for i in range(VALIDATORS)}
    outside = {a: n for a, n in validators.items() if a not in {s.address for s in plan.validators}}
    homes = {address: home(name, name) for address, name in outside.items()}

    stranger = _bahen(next(iter(homes.values())), "dispute", "open", order_id)
    assert stranger.returncode == 1 and "neither a validator of order" in stranger.stderr
    assert "Traceback" not in stranger.stderr

    opened = _bahen(home(worker.name, worker.name), "dispute", "open", order_id)
    assert opened.returncode == 0, opened.stderr
    dispute = net.market.dispute(oid, 0)
    assert dispute.status == "voting" and dispute.disputer == worker.address and dispute.claim_accepted
    assert "disputed: the task should be accepted" in opened.stdout
    for address, party_home in homes.items():
        pending = _bahen(party_home, "dispute", "pending")
        assert pending.returncode == 0, pending.stderr
        assert (f"order {order_id} task 0" in pending.stdout) == (address in dispute.resolvers), pending.stdout

    for resolver in dispute.resolvers:
        if net.market.dispute(oid, 0).status == "voting":
            voted = _bahen(homes[resolver], "dispute", "resolve", order_id)
            assert voted.returncode == 0, voted.stderr
            assert "voted to uphold (re-verification says accepted, the disputer claims accepted)" in voted.stdout
    assert net.market.dispute(oid, 0).status == "upheld"
    assert net.market.order(oid).tasks[0].verdict == "accepted"

    auditor = home(None, "auditor")
    order = _bahen(auditor, "order", "show", order_id)  # a home that never saw the order: what the chain holds
    assert order.returncode == 0, order.stderr
    assert "│ accepted, overturned by a dispute (Wasp's: rejected) │ 1 │" in " ".join(order.stdout.split())
    shown = _bahen(auditor, "dispute", "show", order_id)
    assert shown.returncode == 0, shown.stderr
    flat = " ".join(shown.stdout.split())
    assert f"│ 0 │ accepted │ upheld │ {worker.address} │ accepted │" in flat
    for resolver, uphold in net.market.dispute_votes(oid, 0).items():
        assert uphold and f"│ {resolver} │ uphold │" in flat
    for party_home in (*homes.values(), tmp_path / "parties" / worker.name):
        assert len(keystore_of(Settings(home=party_home, **config)).names()) == 1  # its own identity, no other

    settled = settle(upload, net)
    assert settled.payouts_wei[assignment.address] == assignment.payment_wei and settled.overturned == [0]

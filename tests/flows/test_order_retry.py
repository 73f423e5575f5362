"""Retrying a failed order run, as the UI's Retry does, continues the same order from the stage that failed."""

from contracts.errors import ChainError
from prefect import get_client
from prefect.flow_engine import run_flow
from prefect.states import AwaitingRetry

from bahen.network import connect
from bahen.orders import OrderBook, order_id_for, salt_of_run
from bahen.parties import CLIENT
from bahen.runner import STAGES
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from flows.order import order

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)


def test_the_salt_is_the_runs_and_fresh_outside_a_run():
    run_id = "0b7e3c8e-4c1e-4d6a-9f27-1f8e9c1d2a3b"
    assert salt_of_run(run_id) == salt_of_run(run_id) != salt_of_run("1" + run_id[1:])
    assert salt_of_run(None) != salt_of_run(None)


def test_the_order_id_is_the_markets_of_the_client_and_salt():
    """Known answer: keccak256(abi.encode(address, bytes32)) as the market computes it."""
    client, salt = "0x" + "11" * 20, "0x" + "22" * 32
    assert order_id_for(client, salt) == "0xf4f69ba108f6504dc58f181a5b843d353a4b9b2ec8149a50e0822656df2c3a8c"


def test_retrying_a_failed_order_run_continues_the_same_order(prefect, monkeypatch):
    def validator_offline(*args, **kwargs):
        raise ChainError("the validator's chain node went away")

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(order, parameters={"spec": SMALL.model_dump(mode="json")})
    with monkeypatch.context() as patched:
        patched.setattr("tasks.verify.verify", validator_offline)
        assert run_flow(order, flow_run=run, parameters={"spec": SMALL}, return_type="state").is_failed()
    order_id = order_id_for(connect(load_settings()).party(CLIENT).address, salt_of_run(str(run.id)))
    failed = OrderBook(load_settings().orders_dir).load(order_id)
    assert failed.training is not None and failed.verification is None
    escrow = connect(load_settings()).market.order(bytes.fromhex(order_id[2:])).escrow

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, AwaitingRetry(), force=True)
        retried = client.read_flow_run(run.id)
    record = run_flow(order, flow_run=retried, parameters={"spec": SMALL})

    assert record.order_id == order_id and record.verdict.accepted
    assert (record.upload, record.shard, record.training) == (failed.upload, failed.shard, failed.training)
    assert [t.stage for t in record.timings] == list(STAGES)  # every stage ran once over both attempts
    assert record.shard.escrow_wei == escrow

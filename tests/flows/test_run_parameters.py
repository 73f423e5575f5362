"""A run's parameters on a real Prefect server: records holding floats that are not finite reach the run intact,
and an order whose stage run the server refuses ends with its escrow refunded.

An honest training whose loss diverges logs NaN or infinite losses; a task no validator could score has
NaN scores. The server stores a run's parameters as JSON, where a bare non-finite float becomes null and
the run's validation then refuses the record: the validator's run would fail before it judged anything.
"""

import math

import pytest
from prefect import flow, get_client
from storage.refs import ArtifactRef

from bahen.network import connect
from bahen.orders import OrderBook
from bahen.records import OrderRecord, Scores, Training
from bahen.settings import load_settings
from bahen.spec import OrderSpec
from tasks.dispatch import RunRefused, ending_on_failure, start_run
from tasks.encrypt_upload import encrypt_upload
from tasks.shard import shard

REF = ArtifactRef(name="x", md5="0" * 32, sha256="0" * 64, size=1)


@flow(name="judge", validate_parameters=True)
def judge(training: Training, scores: Scores) -> None:
    """A stage taking the records Wasp's takes, whose parameter schema the server enforces on every run."""


@pytest.fixture(scope="module")
def deployment(prefect):
    judge.to_deployment(name="non-finite").apply()
    return "judge/non-finite"


def test_non_finite_floats_in_a_runs_records_reach_the_run_as_the_same_floats(deployment):
    training = Training(order_id="0x" + "ab" * 32, task=0, worker="0x" + "11" * 20, bundle=REF, merkle_root="00",
                        commit_block=1, final_model=REF, steps=3, final_loss=math.nan,
                        losses=[2.3, math.inf, math.nan], seconds=1.0)
    scores = Scores(order_id=training.order_id, reports={}, accuracy={"0xaa": math.nan}, loss={"0xaa": -math.inf},
                    median_accuracy=math.nan, outliers=[])
    run = start_run(deployment, {"training": training, "scores": scores}, key="nan-parameters", queue=None)
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(run.id).parameters
    # what the run's flow (validate_parameters=True) makes of each before its first line
    got = Training.model_validate(stored["training"])
    assert math.isnan(got.final_loss) and got.losses[:2] == [2.3, math.inf] and math.isnan(got.losses[2])
    got = Scores.model_validate(stored["scores"])
    assert math.isnan(got.accuracy["0xaa"]) and got.loss["0xaa"] == -math.inf and math.isnan(got.median_accuracy)


def test_an_order_whose_stage_run_the_server_refuses_ends_with_its_escrow_refunded(prefect):
    spec = OrderSpec(dataset="digits", model="mlp", epochs=1)
    net = connect(load_settings())
    upload = encrypt_upload(spec, net, salt="0x" + "f7" * 32)
    book = OrderBook(net.settings.orders_dir)
    book.save(OrderRecord(order_id=upload.order_id, spec=spec, status="open", upload=upload))
    shard(spec, upload, net)
    refused = "the Prefect server refused a run of verify/verify (Validation failed)"
    with pytest.raises(RunRefused), ending_on_failure(upload):
        raise RunRefused(refused)
    assert net.market.order(bytes.fromhex(upload.order_id[2:])).status == "cancelled"
    assert book.load(upload.order_id).status.startswith(f"cancelled, escrow refunded: {refused}")


@pytest.mark.parametrize("wrong", [{"order_id": "0x" + "ab" * 31}, {"order_id": "ab" * 33}, {"task": -1}, {"task": 64}],
                         ids=["short-order-id", "order-id-without-0x", "negative-task", "task-past-the-last"])
def test_the_server_refuses_a_run_handed_a_record_of_no_order_or_no_task(deployment, wrong):
    training = Training(order_id="0x" + "ab" * 32, task=0, worker="0x" + "11" * 20, bundle=REF, merkle_root="00",
                        commit_block=1, final_model=REF, steps=3, final_loss=1.0, losses=[1.0], seconds=1.0)
    scores = Scores(order_id=training.order_id, reports={}, accuracy={}, loss={}, median_accuracy=0.0, outliers=[])
    with pytest.raises(RunRefused, match=f"refused a run of {deployment} .*field 'training.{next(iter(wrong))}'"):
        start_run(deployment, {"training": training.model_copy(update=wrong), "scores": scores},
                  key=f"wrong {wrong}", queue=None)

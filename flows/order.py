"""The client's order, end to end: the table of contents of the pipeline.

encrypt_upload, shard and settle run in this process, as the client. Every other stage runs as the
party that signs it (``tasks.dispatch``): in this process on the embedded devnet, or on that
party's own host through its pool when the order runs from its deployment; a stage that cannot
finish there ends the order with its escrow refunded. The chain derives the order's id from the
client's address and a salt, given or derived from the flow run's id, and every stage passes through when the
order's record already holds its result, so retrying the run (the UI's Retry) continues the same
order from the stage that failed.
"""

from prefect import flow, runtime

from bahen.orders import Salt, salt_of_run
from bahen.records import OrderRecord
from bahen.spec import OrderSpec
from bahen.submission import Signature
from tasks.dispatch import Stages, claim_order_task, ending_on_failure
from tasks.encrypt_upload import encrypt_upload_task
from tasks.report import report_task
from tasks.settle import settle_task
from tasks.shard import shard_task


@flow(name="order", flow_run_name="order-{spec.model}-{spec.data_name}", validate_parameters=True)
def order(spec: OrderSpec = OrderSpec(), salt: Salt = "", signature: Signature = "") -> OrderRecord:
    """Train ``spec`` on rented compute, verify the proof, score, audit, settle on chain, then deliver the model.

    ``salt`` fixes the order's id before the run starts (``bahen.orders.order_id_for``); leave it
    empty to derive it from the flow run's id. ``signature`` is the client's over both
    (``bahen.submission``); a run on the network without it is refused unless the client's host allows it.
    """
    salt = salt or salt_of_run(runtime.flow_run.id)
    claim_order_task(spec, salt, signature)
    upload = encrypt_upload_task(spec, salt)
    shard = shard_task(spec, upload)
    stages = Stages()
    trainings = []
    with ending_on_failure(upload):
        for assignment in shard.assignments:
            shard, assignment, training = stages.train(spec, upload, shard, assignment)
            shard, training, _ = stages.verify(spec, upload, shard, assignment, training)
            stages.score(spec, upload, shard, training)
            stages.audit(upload, shard, assignment, training)
            trainings.append(training)
    settle_task(upload)
    for training in trainings:
        stages.deliver(upload, shard, training)
    return report_task(upload.order_id)

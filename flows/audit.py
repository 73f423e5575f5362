"""Re-audit a recorded order, deployed on the ``control`` pool: Wasp's rules re-run on re-checked evidence.

Anyone holding the order's record can run it: the evidence is gathered again from the store and
the chain (every signature and digest re-checked), Wasp's rules decide again, and the new decision
is compared with the verdict recorded on chain. Nothing is written on chain.
"""

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from proof.wasp import decide
from pydantic import BaseModel

from bahen.errors import BahenError
from bahen.records import OrderRecord
from tasks.audit import explain, gather
from tasks.runtime import network, order_book


class AuditCheck(BaseModel):
    """One task's re-audit: the decision reached now against the one recorded."""

    order_id: str
    task: int
    accepted: bool
    recorded_accepted: bool
    agrees: bool
    reasons: list[str]


class IncompleteOrderError(BahenError):
    """The order has no verdict yet, so there is nothing to re-audit."""


@task(name="reaudit", cache_policy=NO_CACHE)
def reaudit_task(record: OrderRecord) -> list[AuditCheck]:
    """Gather the evidence of every task again and re-run Wasp's rules."""
    if record.verdict is None or record.verification is None or record.scores is None or record.training is None:
        raise IncompleteOrderError(
            f"order {record.order_id} is {record.status!r} with no verdict: wait for it to be audited, then re-audit"
        )
    net = network()
    checks = []
    for assignment in record.shard.assignments:
        evidence = gather(record.upload, record.shard, assignment, record.training, record.verification, record.scores, net)
        decision = decide(evidence)
        checks.append(AuditCheck(
            order_id=record.order_id, task=assignment.task, accepted=decision.accepted,
            recorded_accepted=record.verdict.accepted, agrees=decision.accepted == record.verdict.accepted,
            reasons=explain(decision.reasons),
        ))
    create_markdown_artifact(
        key=f"reaudit-{record.order_id[2:14]}", description=f"Re-audit of order {record.order_id}",
        markdown="\n".join(
            f"## Task {c.task}: {'agrees' if c.agrees else 'DISAGREES'} with the recorded verdict\n\n"
            + "\n".join(f"- {r}" for r in c.reasons) for c in checks
        ),
    )
    return checks


@flow(name="audit", flow_run_name="audit-{order_id}", validate_parameters=True)
def audit(order_id: str) -> list[AuditCheck]:
    """Re-check every signature and commitment of ``order_id`` and re-run Wasp's rules."""
    return reaudit_task(order_book().load(order_id))

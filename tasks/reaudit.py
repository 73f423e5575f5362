"""reaudit — anyone re-checks an order: Wasp's rules re-run on re-checked evidence.

The order comes from the client's record on the client's host, and from the chain and the store
everywhere else (the audit case Wasp signed with each verdict: ``bahen.audit.reconstruct``).
Every artifact the order pins is re-hashed and every commitment recomputed against the chain
(``bahen.audit.recheck``), the evidence is gathered again from the store and the chain (every
signature and digest re-checked), Wasp's rules decide again, and the new decision is compared with
the stored signed verdict, which must be the one the chain recorded. Nothing is written on chain.
"""

import dataclasses
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from proof.wasp import decide
from pydantic import BaseModel, Field

from bahen.audit import Audited, audited, recheck, workspace_store
from bahen.errors import BahenError
from bahen.settings import load_settings
from tasks.audit import explain, gather
from tasks.runtime import network


class AuditCheck(BaseModel):
    """One task's re-audit: the decision reached now against the one recorded, and what failed to re-check."""

    order_id: str
    task: int
    accepted: bool
    recorded_accepted: bool
    agrees: bool
    reasons: list[str]
    problems: list[str] = Field(description="Artifacts or commitments that did not re-check; empty when all held")


class IncompleteOrderError(BahenError):
    """The order's record has no verdict yet, so there is nothing to re-audit."""


class ReauditDisagreesError(BahenError):
    """An artifact or commitment did not re-check, or Wasp's rules now decide otherwise."""


@task(name="find_order", cache_policy=NO_CACHE)
def audited_task(order_id: str, workspace: str | None = None) -> list[Audited]:
    """The order as this host can audit it: the audit cases an exported workspace pins, the client's
    record, or the audit cases of chain and store."""
    return audited(order_id, load_settings(), None if workspace is None else Path(workspace))


@task(name="reaudit", cache_policy=NO_CACHE)
def reaudit_task(record: Audited, workspace: str | None = None) -> list[AuditCheck]:
    """Gather the evidence of the record's task again and re-run Wasp's rules (on the artifacts an
    exported ``workspace`` pulled, when given)."""
    if record.verdict is None or record.verification is None or record.scores is None or record.training is None:
        raise IncompleteOrderError(
            f"order {record.order_id} is {record.status!r} with no verdict: wait for it to be audited, then re-audit"
        )
    net = network()
    if workspace is not None:
        net = dataclasses.replace(net, store=workspace_store(Path(workspace)))
    problems = recheck(record, net.store, net.market)
    checks = []
    for assignment in (a for a in record.shard.assignments if a.task == record.training.task):
        evidence = gather(record.upload, record.shard, assignment, record.training, record.verification, record.scores, net)
        decision = decide(evidence)
        checks.append(AuditCheck(
            order_id=record.order_id, task=assignment.task, accepted=decision.accepted,
            recorded_accepted=record.verdict.accepted, reasons=explain(decision.reasons), problems=problems,
            agrees=not problems and decision.accepted == record.verdict.accepted,
        ))
    create_markdown_artifact(
        key=f"reaudit-{record.order_id[2:14]}", description=f"Re-audit of order {record.order_id}",
        markdown="\n".join(
            f"## Task {c.task}: {'agrees' if c.agrees else 'DISAGREES'} with the recorded verdict\n\n"
            + "\n".join(f"- {r}" for r in c.reasons)
            + "".join(f"\n- ✗ {p}" for p in c.problems) for c in checks
        ),
    )
    if not all(c.agrees for c in checks):
        raise ReauditDisagreesError(
            f"the re-audit of order {record.order_id} disagrees with its recorded verdict: "
            + "; ".join([*problems, *(f"task {c.task} decides {'accepted' if c.accepted else 'rejected'}"
                                      for c in checks if c.accepted != c.recorded_accepted)])
        )
    return checks

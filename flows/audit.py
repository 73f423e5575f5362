"""Re-audit an order, deployed on the ``control`` pool: Wasp's rules re-run on re-checked evidence;
re-verify it, as an auditor the order names: its verification re-executed.

Anyone can run it: the client from its record, any other host from the chain and the store (the
audit case Wasp signed with each verdict). Every artifact the order pins is re-hashed and every
commitment recomputed against the chain, stage by stage (``tasks.reaudit.rechecked``), the evidence
is gathered again from the store and the chain (every signature and digest re-checked), Wasp's
rules decide again, and the new decision is compared with the stored signed verdict, which must be
the one the chain recorded. Nothing is written on chain; a re-audit that disagrees ends the run Failed.
"""

from prefect import flow

from tasks.reaudit import AuditCheck, ReverifyCheck, audited_task, reaudit_task, reverify_task


@flow(name="audit", flow_run_name="audit-{order_id}", validate_parameters=True)
def audit(order_id: str, workspace: str | None = None) -> list[AuditCheck]:
    """Re-check every signature and commitment of ``order_id`` and re-run Wasp's rules.

    ``workspace`` is an exported auditor workspace (``bahen audit export``) whose audit cases to
    re-check, instead of this home's record or the store's cases.
    """
    return [check for record in audited_task(order_id, workspace) for check in reaudit_task(record, workspace)]


@flow(name="reverify", flow_run_name="reverify-{order_id}", validate_parameters=True)
def reverify(order_id: str, workspace: str | None = None) -> list[ReverifyCheck]:
    """Re-execute the verification of every judged task of ``order_id`` as this host's auditor, whom the
    order must name, and compare it with the validator's signed report and Wasp's verdict.

    ``workspace`` is an exported auditor workspace (``bahen audit export``) whose pulled artifacts to
    read, instead of the store.
    """
    return [reverify_task(record, workspace) for record in audited_task(order_id, workspace)]

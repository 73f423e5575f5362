"""The third-party auditor's view of an order: every pinned artifact, pullable with stock DVC.

An order's public documents (manifests, grants, signed reports, the verdict) name every other
artifact, so the export walks them: the dataset manifest, the worker's signed proof manifest (its
checkpoints, step log and telemetry), its signed challenge response and the states it revealed,
the verification and performance reports and the verdict. Each belongs to the stage of the order
that made it (:data:`AUDIT_STAGES`, :func:`stage_artifacts`); :func:`recheck` re-hashes every one of
a stage's and recomputes the stage's commitments against the chain, and an exported workspace's
``dvc.yaml`` re-checks the order stage by stage (:func:`export_order`).

The client's home keeps the order's record; any other host starts from the chain: for every task
with a verdict there, Wasp signed the case it judged (``AuditCase``) and named it in the store by
the order, the task and the verdict's digest on chain (:func:`case_pointer`). :func:`reconstruct`
reads it back, and the case serves where the record would. An accepted task's delivery is found the
same way, by the digest its delivering validator recorded on chain (:func:`delivery_pointer`).
"""

from collections.abc import Callable
from pathlib import Path

from contracts.client import Bahen
from contracts.models import OrderView
from privacy.signing import digest
from proof.bundle import ProofBundle, check_bundle
from proof.response import Response
from proof.wasp import Decision
from storage.export import export_dvc_workspace, pinned_ref
from storage.refs import ArtifactRef
from storage.store import ArtifactStore, open_store

from bahen.artifacts import get_signed
from bahen.errors import BahenError, user_errors
from bahen.network import connect, store_of
from bahen.orders import OrderBook, UnknownOrderError
from bahen.records import AuditCase, Delivery, OrderRecord, Shard, ValidatorSlot
from bahen.settings import Settings, load_settings

Audited = OrderRecord | AuditCase


class NoVerdictError(BahenError):
    """The chain holds no verdict of the order yet: there is nothing to re-audit."""


def case_pointer(order_id: str, task: int, verdict_digest: str) -> str:
    """The store's name for the audit case of ``order_id``'s task ``task`` whose verdict has the digest the
    chain records. Wasp writes it before the verdict is stored or on chain, so nobody else can know the
    name in time to take it."""
    return f"orders/{order_id.lower()}/task-{task}/case-{verdict_digest.removeprefix('0x').lower()}"


def delivery_pointer(order_id: str, task: int, delivery_digest: str) -> str:
    """The store's name for the signed delivery of ``order_id``'s task ``task`` (its model key released) whose
    digest the delivering validator records on chain. The validator writes it before the digest is on
    chain or the delivery stored, so nobody else can know the name in time to take it."""
    return f"orders/{order_id.lower()}/task-{task}/delivery-{delivery_digest.removeprefix('0x').lower()}"


def report_pointer(order_id: str, task: int, kind: int, report_digest: str) -> str:
    """The store's name for a validator's signed report of ``kind`` (0 verification, 1 performance) on
    ``order_id``'s task ``task`` whose digest it attests on chain. The validator writes it before the report
    is stored or its digest on chain, and the report holds a fresh nonce, so nobody else can know the name
    in time to take it; Wasp finds every attested report by it, whatever its run was handed."""
    return f"orders/{order_id.lower()}/task-{task}/report-{kind}-{report_digest.removeprefix('0x').lower()}"


def reconstruct(order_id: str, store: ArtifactStore, market: Bahen) -> list[AuditCase]:
    """The audit case of every task of ``order_id`` that has a verdict on chain, from the chain and the store.

    Each must be signed by a holder of the market's Wasp role and judge this order and task with the
    verdict the chain records; what it says is then re-checked like a record (:func:`recheck`),
    against the chain. A task whose model was delivered carries the delivery its delivering
    validator signed.
    """
    view = _judged(order_id, market)
    cases = []
    for t in (t for t in view.tasks if t.verdict != "none"):
        cases.append(_delivered(_signed_case(store, view, t.task, market), store, view, market,
                                lambda deliverer, digest, task=t.task: store.get_pointer(
                                    deliverer, delivery_pointer(order_id, task, digest))))
    return cases


def judged_case(order_id: str, task: int, store: ArtifactStore, market: Bahen) -> AuditCase:
    """The audit case Wasp signed with its verdict of ``order_id``'s task ``task``, found and checked as
    :func:`reconstruct` finds and checks it (without the task's delivery): what Wasp judged, whatever
    another party's record of the order holds."""
    return _signed_case(store, _judged(order_id, market), task, market)


def _signed_case(store: ArtifactStore, view: OrderView, task: int, market: Bahen) -> AuditCase:
    """The audit case named by the task's verdict digest on chain in its recorder's store folder (:func:`_case`);
    :class:`NoVerdictError` when the task has no verdict, or the order no such task."""
    recorder = _recorder(market, view.order_id, task)
    pointer = case_pointer(view.order_id, task, view.tasks[task].reasons_digest)
    return _case(store, store.get_pointer(recorder, pointer), view, task, market)


def workspace_cases(order_id: str, workspace: Path, store: ArtifactStore, market: Bahen) -> list[AuditCase]:
    """The audit cases an exported workspace pins (``order/task<n>-case.json``, with the signed delivery
    ``order/task<n>-delivery.json`` where there is one), read through ``store`` (the workspace's DVC cache
    once ``dvc pull`` has filled it), for every task with a verdict on chain."""
    view = _judged(order_id, market)
    cases = []
    for t in (t for t in view.tasks if t.verdict != "none"):
        case = _case(store, pinned_ref(Path(workspace) / f"{case_path(t.task)}.dvc"), view, t.task, market)
        pinned = Path(workspace) / f"{delivery_path(t.task)}.dvc"
        cases.append(_delivered(case, store, view, market,
                                lambda _deliverer, _digest, pinned=pinned: pinned_ref(pinned) if pinned.exists() else None))
    return cases


def workspace_store(workspace: Path) -> ArtifactStore:
    """The objects ``dvc pull`` fetched into an exported workspace, read as a store (DVC's cache has the store's layout)."""
    cache = Path(workspace) / ".dvc" / "cache"
    if not cache.is_dir():
        raise BahenError(f"{Path(workspace).resolve()} has no DVC cache: run `dvc pull` there first")
    return open_store(str(cache))


def case_path(task: int) -> str:
    """Where an exported workspace pins the audit case of task ``task``."""
    return f"order/task{task}-case.json"


def delivery_path(task: int) -> str:
    """Where an exported workspace pins the signed delivery of task ``task``."""
    return f"order/task{task}-delivery.json"


def _judged(order_id: str, market: Bahen) -> OrderView:
    """The order as the chain holds it, once it has a verdict of at least one task."""
    view = market.order(bytes.fromhex(OrderBook.check_id(order_id)[2:]))
    if all(t.verdict == "none" for t in view.tasks):
        raise NoVerdictError(f"order {order_id} has no verdict on chain yet ({view.status}): re-audit it once Wasp "
                             "has recorded one")
    return view


def _recorder(market: Bahen, order_id: str, task: int) -> str:
    """The Wasp that recorded the task's verdict, in whose store folder its audit case is named."""
    recorder = market.verdict_recorder(bytes.fromhex(order_id[2:]), task)
    if recorder is None:
        raise NoVerdictError(f"order {order_id} task {task} has no verdict on chain")
    return recorder


def _case(store: ArtifactStore, ref: ArtifactRef, view: OrderView, task: int, market: Bahen) -> AuditCase:
    """The audit case at ``ref``, once shown to be signed by Wasp's role and to hold the chain's verdict of the task."""
    order_id = view.order_id
    case, doc = get_signed(store, ref, AuditCase)
    if not market.is_wasp(doc.signer):
        raise BahenError(f"the audit case of order {order_id} task {task} is signed by {doc.signer}, which does not "
                         f"hold Wasp's role in market {market.addresses.market}: it is no case of this market")
    if case.order_id != order_id or case.verdict.task != task:
        raise BahenError(f"the audit case named for order {order_id} task {task} is the case of order "
                         f"{case.order_id} task {case.verdict.task}")
    chain = view.tasks[task]
    if (case.verdict.digest.lower(), "accepted" if case.verdict.accepted else "rejected") != \
            (chain.reasons_digest.lower(), chain.wasp_verdict):
        raise BahenError(f"the audit case of order {order_id} task {task} holds a verdict "
                         f"({'accepted' if case.verdict.accepted else 'rejected'}, {case.verdict.digest}) other than "
                         f"the one Wasp recorded on chain ({chain.wasp_verdict}, {chain.reasons_digest}): Wasp signed "
                         "a case it did not record")
    return case


def delivering_validator(shard: Shard, view: OrderView) -> ValidatorSlot | None:
    """The validator that releases a task's model key: the order's first whose verification no dispute
    overturned (None when every one was)."""
    overturned = {v.validator.lower() for v in view.validators if v.overturned}
    return next((s for s in shard.validators if s.address.lower() not in overturned), None)


def _delivered(case: AuditCase, store: ArtifactStore, view: OrderView, market: Bahen,
               locate: Callable[[str, str], ArtifactRef | None]) -> AuditCase:
    """``case`` with its task's delivery, found by ``locate`` from the validator that delivers by the
    chain's rule (the first of the order's whose verification no dispute overturned) and the digest the
    chain records for it.

    What is found counts only if it is that delivery, signed by that validator for this task; any
    other (another validator's, or nothing on chain) leaves the case audited without it.
    """
    deliverer = delivering_validator(case.shard, view)
    if deliverer is None:
        return case
    recorded = market.delivery_of(bytes.fromhex(view.order_id[2:]), case.verdict.task, deliverer.address)
    try:
        ref = locate(deliverer.address, "0x" + recorded.hex()) if any(recorded) else None
        if ref is None:
            return case
        delivery, doc = get_signed(store, ref, Delivery, expected_signer=deliverer.address)
    except user_errors():
        return case
    if doc.digest.lower() != "0x" + recorded.hex() or delivery.validator.lower() != deliverer.address.lower() or \
            (delivery.order_id, delivery.task) != (case.order_id, case.verdict.task):
        return case
    return case.model_copy(update={"delivery": delivery})


def audited(order_id: str, settings: Settings, workspace: Path | None = None) -> list[Audited]:
    """The order as this host can audit it: the audit cases an exported ``workspace`` pins, else the
    client's record where this home keeps it, else what the chain and the store hold (:func:`reconstruct`)."""
    if workspace is not None:
        return workspace_cases(order_id, workspace, workspace_store(workspace), connect(settings).market)
    try:
        return [OrderBook(settings.orders_dir).load(order_id)]
    except UnknownOrderError:
        net = connect(settings)
        return reconstruct(order_id, net.store, net.market)


AUDIT_STAGES = ("validate", "encrypt", "train", "verify", "score", "audit")
"""The stages an auditor re-checks, in the order's order; each owns the artifacts and commitments it made."""


def staged_artifacts(record: Audited, store: ArtifactStore) -> dict[str, dict[str, ArtifactRef]]:
    """Stage of :data:`AUDIT_STAGES` -> workspace path -> artifact, for everything the order's records and
    proof pin, each under the stage that made it (:func:`stage_artifacts`)."""
    return {stage: stage_artifacts(record, store, stage) for stage in AUDIT_STAGES}


def stage_artifacts(record: Audited, store: ArtifactStore, stage: str) -> dict[str, ArtifactRef]:
    """Workspace path -> artifact, for what ``stage`` of the order pinned: ``validate`` the client's signed
    dataset manifest; ``encrypt`` the sealed splits (and starting weights) and every data-key grant;
    ``train`` the worker's proof, challenge response, revealed states and model-key grants; ``verify``
    the verification report; ``score`` the performance reports; ``audit`` the verdict and the model
    key's delivery. Only ``train`` reads a document (the proof manifest and response name the rest)."""
    if record.upload is None:
        raise BahenError(f"order {record.order_id} stored nothing yet (status: {record.status})")
    upload, pins = record.upload, _Pins()
    if stage == "validate":
        pins["data/manifest.json"] = upload.manifest
    elif stage == "encrypt":
        pins.update({"data/train.enc": upload.train, "data/holdout.enc": upload.holdout})
        if upload.weights is not None:
            pins["data/weights.enc"] = upload.weights
        pins.update({f"grants/client-{role}.json": ref for role, ref in upload.client_grants.items()})
        pins.update({f"grants/auditor-{address}-train.json": ref for address, ref in upload.auditor_grants.items()})
        for a in record.shard.assignments if record.shard else []:
            pins.update({f"grants/task{a.task}-{a.worker}-{role}.json": ref for role, ref in a.grants.items()})
        for v in record.shard.validators if record.shard else []:
            pins.update({f"grants/{v.name}-{role}.json": ref for role, ref in v.grants.items()})
    elif stage == "train" and record.training:
        task = record.training.task
        pins.update({f"grants/task{task}-model-{address}.json": ref
                     for address, ref in record.training.model_grants.items()})
        pins[f"proof/task{task}/manifest.json"] = record.training.bundle
        bundle, _ = get_signed(store, record.training.bundle, ProofBundle)
        pins.update({f"proof/task{task}/checkpoint-{step:07d}.enc": ref for step, ref in bundle.checkpoints})
        pins[f"proof/task{task}/step-log.enc"] = bundle.step_log
        pins[f"proof/task{task}/telemetry.enc"] = bundle.telemetry
        if record.training.response is not None:
            pins[f"proof/task{task}/response.json"] = record.training.response
            response, _ = get_signed(store, record.training.response, Response)
            pins.update({f"proof/task{task}/state-{step:07d}.enc": ref for step, ref in response.states})
    elif stage == "verify" and record.verification:
        pins[f"reports/task{record.verification.task}-verification.json"] = record.verification.report
    elif stage == "score" and record.scores:
        pins.update({f"reports/score-{name}.json": ref for name, ref in record.scores.reports.items()})
    elif stage == "audit":
        if record.verdict:
            pins[f"reports/task{record.verdict.task}-verdict.json"] = record.verdict.verdict
        if record.delivery:
            task = record.delivery.task
            pins[f"grants/task{task}-model-client.json"] = record.delivery.grant
            pins.update({f"grants/task{task}-model-auditor-{address}.json": ref
                         for address, ref in record.delivery.auditor_grants.items()})
    return dict(pins)


def _union(staged: dict[str, dict[str, ArtifactRef]]) -> dict[str, ArtifactRef]:
    """Every stage's artifacts under their workspace paths, where a path still names one artifact only."""
    pins = _Pins()
    for paths in staged.values():
        pins.update(paths)
    return dict(pins)


class _Pins(dict):
    """Workspace path -> artifact, where a path names one artifact only: the record's labels (a worker's,
    a validator's) are part of the paths, and a label chosen to make two paths one would hide an artifact."""

    def __setitem__(self, path: str, ref: ArtifactRef) -> None:
        if path in self and self[path] != ref:
            raise BahenError(f"the record names two artifacts at {path} ({self[path].name} and {ref.name}): a label "
                             "it gives a member makes one party's file name another's")
        super().__setitem__(path, ref)

    def update(self, pins: dict[str, ArtifactRef]) -> None:
        for path, ref in pins.items():
            self[path] = ref


def pinned_artifacts(record: Audited, store: ArtifactStore) -> dict[str, ArtifactRef]:
    """Workspace path -> artifact, for everything the order's records and proof pin (every stage's: :func:`staged_artifacts`)."""
    return _union(staged_artifacts(record, store))


def recheck(record: Audited, store: ArtifactStore, market: Bahen, stages: tuple[str, ...] = AUDIT_STAGES) -> list[str]:
    """What does not hold of ``stages`` when every artifact they pinned is re-hashed and every commitment
    they made recomputed.

    Each artifact is read back in full and hashed against its reference. ``train``: the workers named must
    be those the chain drew, paid what it pays them, under the chain's escrow and deadline; the proof
    manifest and the challenge response must be signed by the task's worker; the Merkle root is recomputed
    from the manifest's artifacts and must be the root committed on chain (and the one the record names,
    in the block it names), which the response must answer with the chain's challenge seed. ``score``: the
    validators named must be those the chain drew, with the fees it holds for them. ``audit``: the stored verdict must be
    signed by Wasp's role, and its digest (the record's too) and decision must be what the chain recorded;
    the delivery must be the delivering validator's, whose digest it recorded on chain. Empty when
    everything holds.
    """
    problems = []
    for stage in stages:
        try:
            pins = stage_artifacts(record, store, stage)
        except user_errors() as exc:
            problems.append(f"{stage}: {exc}")
            continue
        for path, ref in pins.items():
            try:
                store.verify(ref)
            except user_errors() as exc:
                problems.append(f"{path}: {exc}")
    try:
        view = market.order(bytes.fromhex(record.order_id[2:]))
        if "train" in stages:
            problems += _recheck_workers(record, view)
            if record.training is not None:
                problems += _recheck_proof(record, store, market, view)
        if "score" in stages:
            problems += _recheck_validators(record, view)
        if "audit" in stages and record.verdict is not None:
            problems += _recheck_verdict(record, store, market, view)
        if "audit" in stages and record.delivery is not None and record.shard is not None:
            problems += _recheck_delivery(record, market, view)
    except user_errors() as exc:  # the chain does not know the order, or cannot be asked
        problems.append(f"chain: {exc}")
    return problems


def _recheck_workers(record: Audited, view: OrderView) -> list[str]:
    """The workers the record names must be the ones the chain drew for the order's tasks."""
    if record.shard is None:
        return []
    problems = [f"task {a.task}: the record names worker {a.address} for a task the order does not have"
                for a in record.shard.assignments if a.task >= len(view.tasks)]
    problems += [f"task {a.task}: the record names worker {a.address}, the chain drew {view.tasks[a.task].worker}"
                 for a in record.shard.assignments
                 if a.task < len(view.tasks) and a.address.lower() != view.tasks[a.task].worker.lower()]
    problems += [f"task {a.task}: the record pays its worker {a.payment_wei} wei, the chain {view.tasks[a.task].payment}"
                 for a in record.shard.assignments if a.task < len(view.tasks) and a.payment_wei != view.tasks[a.task].payment]
    if (record.shard.escrow_wei, record.shard.deadline) != (view.escrow, view.deadline):
        problems.append(f"the record's shard holds an escrow of {record.shard.escrow_wei} wei and the deadline "
                        f"{record.shard.deadline}, the chain {view.escrow} wei and {view.deadline}")
    assigned = [a.task for a in record.shard.assignments]
    problems += [f"task {t.task}: the record names no worker, or several, for it; the chain drew {t.worker}"
                 for t in view.tasks if assigned.count(t.task) != 1]
    if record.training is not None and record.training.task < len(view.tasks) and \
            record.training.worker.lower() != view.tasks[record.training.task].worker.lower():
        problems.append(f"task {record.training.task}: the proof names worker {record.training.worker}, the chain drew "
                        f"{view.tasks[record.training.task].worker}")
    return problems


def _recheck_validators(record: Audited, view: OrderView) -> list[str]:
    """The validators the record names must be the ones the chain drew for the order."""
    if record.shard is None:
        return []
    named = sorted(v.address.lower() for v in record.shard.validators)
    drawn = sorted(v.validator.lower() for v in view.validators)
    if named != drawn:
        return [f"the record names validators {', '.join(named)}; the chain drew {', '.join(drawn)}"]
    fees = {v.validator.lower(): v.fee for v in view.validators}
    return [f"the record pays validator {v.address} a fee of {v.fee_wei} wei, the chain {fees[v.address.lower()]}"
            for v in record.shard.validators if v.fee_wei != fees[v.address.lower()]]


def _recheck_proof(record: Audited, store: ArtifactStore, market: Bahen, view: OrderView) -> list[str]:
    training = record.training
    if training.task >= len(view.tasks):
        return [f"task {training.task}: the record's training is of a task order {record.order_id} does not have"]
    committed = view.tasks[training.task].root.removeprefix("0x")
    try:
        bundle, _ = get_signed(store, training.bundle, ProofBundle, expected_signer=training.worker)
        check_bundle(bundle)
    except user_errors() as exc:
        return [f"proof manifest: {exc}"]
    problems = []
    if bundle.merkle_root != committed:
        problems.append(f"proof manifest: its root {bundle.merkle_root} is not the root {committed} committed on chain")
    if training.merkle_root != committed:
        problems.append(f"the order's record names the root {training.merkle_root}, the chain's is {committed}")
    if training.commit_block != view.tasks[training.task].commit_block:
        problems.append(f"task {training.task}: the record's commitment block {training.commit_block} is not the "
                        f"chain's {view.tasks[training.task].commit_block}")
    if bundle.checkpoints and training.final_model != bundle.checkpoints[-1][1]:  # a proof of none fails verification
        problems.append("the order's final model is not the proof's last checkpoint")
    if training.response is not None:
        try:
            response, _ = get_signed(store, training.response, Response, expected_signer=training.worker)
            seed = market.challenge_seed(bytes.fromhex(view.order_id[2:]), training.task).hex()
        except user_errors() as exc:
            return [*problems, f"challenge response: {exc}"]
        if (response.merkle_root, response.challenge_seed) != (committed, seed):
            problems.append("challenge response: it answers another commitment or challenge than the chain's")
    return problems


def _recheck_verdict(record: Audited, store: ArtifactStore, market: Bahen, order: OrderView) -> list[str]:
    if record.verdict.task >= len(order.tasks):
        return [f"task {record.verdict.task}: the record's verdict is of a task order {record.order_id} does not have"]
    view = order.tasks[record.verdict.task]
    try:
        decision, doc = get_signed(store, record.verdict.verdict, Decision)
    except user_errors() as exc:
        return [f"verdict: {exc}"]
    problems = []
    if record.verdict.digest.lower() != doc.digest.lower():
        problems.append(f"verdict: the order's record names the digest {record.verdict.digest}, the stored verdict's is "
                        f"{doc.digest}")
    if decision.accepted != record.verdict.accepted:
        problems.append(f"verdict: it says {'accepted' if decision.accepted else 'rejected'}, the order's record "
                        f"{'accepted' if record.verdict.accepted else 'rejected'}")
    if not market.is_wasp(doc.signer):
        problems.append(f"verdict: signed by {doc.signer}, which does not hold Wasp's role")
    if "0x" + digest(decision).hex() != view.reasons_digest.lower():
        problems.append(f"verdict: its digest is not the {view.reasons_digest} recorded on chain")
    if ("accepted" if decision.accepted else "rejected") != view.wasp_verdict:
        problems.append(f"verdict: it says {'accepted' if decision.accepted else 'rejected'}, Wasp's on chain "
                        f"{view.wasp_verdict}")
    return problems


def _recheck_delivery(record: Audited, market: Bahen, view: OrderView) -> list[str]:
    """The delivery the record holds must be the one the order's delivering validator recorded on chain."""
    delivery = record.delivery
    deliverer = delivering_validator(record.shard, view)
    if deliverer is None or delivery.validator.lower() != deliverer.address.lower():
        return [f"delivery: by {delivery.validator}, not the validator that delivers the order's model key "
                f"({deliverer.address if deliverer else 'none: every verification was overturned'})"]
    recorded = market.delivery_of(bytes.fromhex(view.order_id[2:]), delivery.task, deliverer.address)
    if digest(delivery) != recorded:
        return [f"delivery: its digest is not the 0x{recorded.hex()} {deliverer.address} recorded on chain"]
    return []


def export_order(order_id: str, directory: Path) -> tuple[Path, int]:
    """Write a DVC workspace for ``order_id`` in ``directory``; returns it and the artifact count.

    From the client's record where this home keeps it, else from the audit case the chain and the
    store hold. Once the order has a verdict, the workspace also pins Wasp's signed audit case of
    each task (and the signed delivery of its model key) and its ``dvc.yaml`` holds the order's
    pipeline: one stage per stage of the order, ``validate``, ``encrypt``, ``train``, ``verify`` and
    ``score``, each re-checking the artifacts it pinned and the commitments it made (``bahen audit check
    --workspace --stage``, writing ``checks/STAGE.json``) after the one before it, then ``audit``, which
    re-runs Wasp's rules on the whole (``bahen audit check --workspace``, writing ``audit.json``).
    ``dvc pull && dvc repro`` there stops at the first stage that does not re-check, naming what did not
    hold. When the order names auditors, a ``reexecute`` stage before ``audit`` re-executes the
    verification as this host's auditor (``bahen audit verify --workspace``) and writes ``verify.json``.
    """
    settings = load_settings()
    record = audited(order_id, settings)[0]
    store = store_of(settings)
    staged = staged_artifacts(record, store)
    pins = _union(staged)
    params = {"order_id": order_id, "status": record.status}
    if isinstance(record, OrderRecord):
        params["spec"] = record.spec.model_dump(mode="json")
    else:
        params["spec_hash"] = record.upload.spec_hash
    stages = None
    if record.training:
        params["merkle_root"] = record.training.merkle_root
    if record.verdict:
        task = record.verdict.task
        pins[case_path(task)] = store.get_pointer(_recorder(connect(settings).market, order_id, task),
                                                  case_pointer(order_id, task, record.verdict.digest))
        if record.delivery:
            pins[delivery_path(task)] = store.get_pointer(
                record.delivery.validator, delivery_pointer(order_id, task, "0x" + digest(record.delivery).hex()))
        stages, before = {}, []
        for stage in AUDIT_STAGES[:-1]:
            stages[stage] = {"cmd": f"bahen audit check {order_id} --workspace . --stage {stage}",
                             "deps": [*sorted([case_path(task), *staged[stage]]), *before],
                             "metrics": [{f"checks/{stage}.json": {"cache": False}}]}
            before = [f"checks/{stage}.json"]
        if record.upload.auditor_grants:
            stages["reexecute"] = {"cmd": f"bahen audit verify {order_id} --workspace .", "deps": [*sorted(pins), *before],
                                   "metrics": [{"verify.json": {"cache": False}}]}
            before = ["verify.json"]
        stages["audit"] = {"cmd": f"bahen audit check {order_id} --workspace .", "deps": [*sorted(pins), *before],
                           "metrics": [{"audit.json": {"cache": False}}]}
    path = export_dvc_workspace(
        settings.resolved_store_url, pins, directory, endpoint_url=settings.s3_endpoint_url, params=params,
        stages=stages,
    )
    return path, len(pins)

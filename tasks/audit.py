"""audit (Wasp-audit) — check every signature and commitment, weigh the reports, record the verdict.

Wasp trusts nothing it did not check, and judges nothing its run was handed but the task's
identity (:func:`check_case`). It reads the reports from the store by the digests the validators
attested on chain (:func:`attested_evidence`): the verification report of the order's verifier
and every performance report. It checks the worker's manifest signature and its root against the
chain, each report's signer and digest, each score against the committed final model. The rules
in ``proof.wasp`` then decide; the signed decision is stored and its digest recorded on chain by
the Wasp role, and so is the signed case it judged (``bahen.records.AuditCase``), named by the
order, the task and the verdict's digest on chain, from which anyone re-audits the order with the
chain and the store alone (``bahen.audit.reconstruct``).
"""

import math
import os
import time

from contracts.models import OrderView
from prefect import task
from prefect.cache_policies import NO_CACHE
from privacy.errors import PrivacyError
from privacy.signing import SignedDocument, digest
from proof.bundle import ProofBundle
from proof.report import VerificationReport
from proof.scoring import PerformanceReport
from proof.wasp import Decision, Evidence, Reason, decide, score_quorum
from storage.errors import StorageError

from bahen.artifacts import get_signed, signed
from bahen.audit import case_pointer
from bahen.network import Network
from bahen.records import (
    Assignment,
    AuditCase,
    Scores,
    Shard,
    Training,
    Upload,
    Verdict,
    Verification,
    VoidedVerification,
)
from tasks.inputs import InputMismatch, check_case_grants, check_validators, signed_inputs, worker_evidence
from tasks.runtime import network
from tasks.score import REPORT_PERFORMANCE, SignedScore, gathered
from tasks.verify import (
    REPORT_VERIFICATION,
    UnusableVerification,
    attested_report,
    checked_task,
    usable_verification,
    verification_of,
    verifier_of,
)

UNTRUSTED = (PrivacyError, StorageError, ValueError)


def attested_on_chain(net: Network, oid: bytes, task: int, kind: int, signer: str, doc_digest: str) -> bool:
    """Whether ``signer`` attested on chain, for the task and report kind, the signed document of digest ``doc_digest``."""
    return net.market.report_of(oid, task, kind, signer) == bytes.fromhex(doc_digest[2:])


def _claimed_loss(report: VerificationReport) -> float:
    """The worker's last logged loss, as the verifier read it from the step log into its report."""
    return math.nan if report.claimed_final_loss is None else report.claimed_final_loss


def verification_attested(net: Network, report: VerificationReport, doc: SignedDocument, order: OrderView, task: int) -> bool:
    """Whether ``report`` (signed as ``doc``) is the verification the task's verifier attested on chain: signed by
    it, its digest the one attested, and the check of this order and task, the chain's challenge and the
    committed root (a report counts only for the task it checked)."""
    return checked_task(net, report, order.order_id, task, order) and doc.signer == verifier_of(order, task) and \
        attested_on_chain(net, bytes.fromhex(order.order_id[2:]), task, REPORT_VERIFICATION, doc.signer, doc.digest)


def gather(upload: Upload, shard: Shard, assignment: Assignment, training: Training,
           verification: Verification, scores: Scores, net: Network) -> Evidence:
    """Collect the evidence of one task, checking every signature and on-chain digest.

    The verification report counts only if the task's verifier (``tasks.verify.verifier_of``) signed
    it and attested its digest on chain for this task's challenge and committed root.
    """
    oid = bytes.fromhex(upload.order_id[2:])
    order = net.market.order(oid)
    committed = order.tasks[assignment.task].root.removeprefix("0x")
    try:
        bundle, _ = get_signed(net.store, training.bundle, ProofBundle, expected_signer=assignment.address)
        manifest_signed, root_committed = True, bundle.merkle_root == committed
        final_model = bundle.checkpoints[-1][1].sha256 if bundle.checkpoints else None  # a proof of nothing scores nothing
    except UNTRUSTED:
        manifest_signed = root_committed = False
        final_model = None
    report, attested = None, False
    try:
        report, doc = get_signed(net.store, verification.report, VerificationReport)
        attested = verification_attested(net, report, doc, order, assignment.task)
    except UNTRUSTED:
        pass
    performance, performance_attested = [], 0
    for slot in shard.validators:
        try:
            perf, doc = get_signed(net.store, scores.reports[slot.name], PerformanceReport, expected_signer=slot.address)
        except (*UNTRUSTED, KeyError):
            continue
        if (perf.order_id, perf.task, perf.validator.lower(), perf.model_sha256) != (
                upload.order_id, assignment.task, slot.address.lower(), final_model):
            continue  # a score of some other order, task or model, or under another's name, says nothing of this one
        performance.append(perf)
        performance_attested += attested_on_chain(net, oid, assignment.task, REPORT_PERFORMANCE, slot.address, doc.digest)
    return Evidence(
        order_id=upload.order_id, task=assignment.task, num_classes=upload.num_classes,
        validators_assigned=len(shard.validators), manifest_signed=manifest_signed, root_committed=root_committed,
        verification=report, verification_attested=attested, performance=performance,
        performance_attested=performance_attested,
        claimed_final_loss=_claimed_loss(report) if attested else math.nan,
    )


def check_case(upload: Upload, shard: Shard, assignment: Assignment, training: Training, net: Network) -> OrderView:
    """The order as the chain holds it, once the case is shown to be the task's own (``tasks.inputs``);
    :class:`InputMismatch` otherwise.

    The upload must be the one its client signed for the order; the worker and the validators
    handed over, the ones the chain names (the validators in its slot order); the proof manifest
    and the challenge response, the ones that worker signed and committed; every assignment and grant,
    the order's (``tasks.inputs.check_case_grants``). Anyone can start Wasp's run: judged on anything
    else, an honest worker could be rejected for what a stranger handed over, and recorded in the signed
    case, what a stranger planted would stand in every later re-audit as a problem.
    """
    order_id, task = upload.order_id, assignment.task
    _, _, order = signed_inputs(upload, task, net)
    if training.task != task:
        raise InputMismatch(f"the training handed over is of task {training.task}, the assignment of task {task}")
    bundle, _ = worker_evidence(training, order, task, net)
    worker = order.tasks[task].worker
    if (assignment.address, training.worker) != (worker, worker) or assignment not in shard.assignments:
        raise InputMismatch(f"the worker handed over for task {task} of order {order_id} is not the one the chain "
                            "names: nothing was judged")
    check_validators(shard, order)
    check_case_grants(upload, shard, training, bundle, order, net)
    return order


def attested_evidence(upload: Upload, shard: Shard, task: int, order: OrderView, net: Network) -> tuple[Verification, Scores]:
    """The reports Wasp judges, read from the store by the digests the validators attested on chain
    (``tasks.verify.attested_report``), never taken from its run: the verification report of the
    order's verifier and every performance report of the task.

    Raises :class:`InputMismatch`, and nothing is judged, while the verifier has attested no
    verification report, or fewer than a majority of the validators a score the store holds whole (a
    performance report attested but not readable counts as none) and the scoring window is open
    (:func:`scoring_closes`): the worker is not to blame, and a run started before the validators
    finished cannot sign a poorer model report. Once the window closed, the scores attested by then are
    judged however few: they weigh in no decisive rule, and a silent validator (no fee) cannot keep an
    honest worker from its pay. A verification nobody can judge with (``tasks.verify.usable_verification``)
    raises :class:`UnusableVerification`: the worker is not to blame for it either, and past the window
    Wasp voids it (:func:`void_verification`).
    """
    order_id, verifier = upload.order_id, verifier_of(order, task)
    try:
        verified = usable_verification(net, order_id, task, order)
    except UnusableVerification as exc:
        raise UnusableVerification(f"{exc}: nothing was judged; after chain time {scoring_closes(order, task)} (the "
                                   "order's commit window after the verification) Wasp voids it, and the next verifier "
                                   "drawn verifies") from None
    if verified is None:
        raise InputMismatch(f"{verifier}, the verifier of order {order_id}, has attested no verification report of "
                            f"task {task} on chain: nothing was judged. Wait for the verify stage")
    scored = []
    for slot in shard.validators:
        try:
            found = attested_report(net, order_id, task, REPORT_PERFORMANCE, slot.address, PerformanceReport)
        except UNTRUSTED:
            continue
        if found is not None:
            scored.append(SignedScore(validator=slot.name, report=found[0], ref=found[1]))
    quorum = score_quorum(len(order.validators))
    if len(scored) < quorum and ((closes := scoring_closes(order, task)) is None or net.chain.now() <= closes):
        raise InputMismatch(f"{len(scored)} of the {len(order.validators)} validators of order {order_id} have published "
                            f"a score of task {task} they attested on chain: Wasp judges once {quorum} have, or with "
                            f"those that have after chain time {closes} (the order's commit window after the "
                            "verification): nothing was judged. Wait for the score stage")
    return verification_of(verifier, *verified), gathered(order_id, scored)


def void_verification(upload: Upload, task: int, net: Network) -> VoidedVerification:
    """As Wasp: void on chain the task's verification nobody can judge with (``tasks.verify.usable_verification``)
    once its scoring window closed (the order's commit window after the verification: an honest verifier
    stores its report before it attests it), with no verdict. The task is unverified again and the
    verifier, still the order's, replaced as a stalled one is: no fee, not slashed, never drawn for the
    order again; the client's order has the chain draw the next, which verifies.

    Anyone may start the run: it acts on the upload its client signed (``tasks.inputs.signed_inputs``) and on
    what the chain and the store hold, never on what it was handed. Raises :class:`InputMismatch`, and
    nothing is voided, while the verification can be judged, is not on chain, or its window is open.
    """
    order_id = upload.order_id
    _, _, order = signed_inputs(upload, task, net)
    verifier = verifier_of(order, task)
    try:
        usable = usable_verification(net, order_id, task, order)
    except UnusableVerification as exc:
        if order.tasks[task].verdict != "none":
            raise InputMismatch(f"{exc}, but the task has its verdict, which stands or falls by disputes alone: "
                                "nothing was voided") from None
        if net.chain.now() <= (closes := scoring_closes(order, task)):
            raise InputMismatch(f"{exc}: Wasp voids it after chain time {closes} (the order's commit window after the "
                                "verification), not before: nothing was voided") from None
        tx = net.market.void_verification(net.wasp().account, order_id=bytes.fromhex(order_id[2:]), task=task)
        return VoidedVerification(order_id=order_id, task=task, verifier=verifier, reason=str(exc), tx_hash=tx)
    if usable is None:
        raise InputMismatch(f"{verifier}, the verifier of order {order_id}, has attested no verification of task {task} "
                            "on chain: nothing to void")
    raise InputMismatch(f"the verification of task {task} of order {order_id} that {verifier} attested is in the store "
                        "whole and checked this task: Wasp judges with it (the wasp run) and voids nothing")


def attested_verification(upload: Upload, task: int, net: Network) -> Verification | None:
    """The record of the verification its verifier attested on chain for the task, made from the signed report
    itself (``tasks.verify.usable_verification``), never from what the verifier's run returned; None while
    none is attested. :class:`UnusableVerification` when nobody can judge with it."""
    order = net.market.order(bytes.fromhex(upload.order_id[2:]))
    found = usable_verification(net, upload.order_id, task, order)
    return None if found is None else verification_of(verifier_of(order, task), *found)


def scoring_closes(order: OrderView, task: int) -> int | None:
    """The chain time after which Wasp judges ``task`` with the scores attested by then, however few, and voids
    a verification nobody can judge with: the order's commit window (the time its worker had to train, and
    its verifier to verify) after the verification went on chain, which the chain records as the task's
    ``verify_by``. None while the task has no verification on chain. A validator that scores later still
    earns its fee (it reported), but its score is in no verdict."""
    return order.tasks[task].verify_by if int(order.tasks[task].verifier, 16) else None


def wait_for_scoring(upload: Upload, task: int, net: Network, *, until: float, poll_s: float) -> int | None:
    """As anyone: wait until the scoring window of ``task`` closed on chain (:func:`scoring_closes`), or until
    ``until`` (``time.monotonic()``). Returns the time it closed at, or None when ``until`` came first."""
    oid, closes = bytes.fromhex(upload.order_id[2:]), None
    while True:
        if closes is None:  # once the verification is on chain, its window stays where it is
            closes = scoring_closes(net.market.order(oid), task)
        if closes is not None and net.chain.now() > closes:
            return closes
        if time.monotonic() >= until:
            return None
        net.chain.pause(poll_s)


def audit(upload: Upload, shard: Shard, assignment: Assignment, training: Training, net: Network) -> Verdict:
    """Decide on one task as Wasp and record the verdict on chain, once the case is the task's own (:func:`check_case`),
    on the reports the validators attested (:func:`attested_evidence`)."""
    order = check_case(upload, shard, assignment, training, net)
    verification, scores = attested_evidence(upload, shard, assignment.task, order, net)
    wasp = net.wasp()
    # The nonce makes the verdict's digest, which names the case, unknowable until Wasp writes the name.
    decision: Decision = decide(gather(upload, shard, assignment, training, verification, scores, net)).model_copy(
        update={"nonce": os.urandom(16).hex()})
    name = f"order {upload.order_id[:10]}/task {assignment.task}"
    verdict_bytes, ref, doc = signed(wasp, decision, name=f"{name}/verdict")
    verdict = Verdict(
        order_id=upload.order_id, task=assignment.task, accepted=decision.accepted, reasons=explain(decision.reasons),
        model_report=decision.model_report, verdict=ref, digest=doc.digest,
    )
    case = AuditCase(order_id=upload.order_id, upload=upload, shard=shard, training=training, verification=verification,
                     scores=scores, verdict=verdict)
    case_bytes, case_ref, _ = signed(wasp, case, name=f"{name}/audit case")
    # The case is named by the verdict's digest (its nonce Wasp's secret until now) before the verdict
    # or the case is stored or on chain: nobody else can know the name in time to take it, and
    # whoever reads the verdict on chain finds what it judged.
    net.store.put_pointer(wasp.address, case_pointer(upload.order_id, assignment.task, doc.digest), case_ref)
    net.store.put(verdict_bytes, name=ref.name)
    net.store.put(case_bytes, name=case_ref.name)
    net.market.record_verdict(
        wasp.account, order_id=bytes.fromhex(upload.order_id[2:]), task=assignment.task,
        accepted=decision.accepted, reasons_digest=digest(decision),
    )
    return verdict


def explain(reasons: list[Reason]) -> list[str]:
    """One line per rule: a mark, its name and what it found."""
    return [f"{'✓' if r.passed else '✗'} {r.rule}: {r.detail}" for r in reasons]


@task(name="wait_for_scoring", cache_policy=NO_CACHE)
def wait_for_scoring_task(upload: Upload, task: int, *, until: float, poll_s: float) -> int | None:
    """Prefect task: wait for the scoring window of a task to close (:func:`wait_for_scoring`)."""
    return wait_for_scoring(upload, task, network(), until=until, poll_s=poll_s)


@task(name="attested_verification", cache_policy=NO_CACHE)
def attested_verification_task(upload: Upload, task: int) -> Verification | None:
    """Prefect task: the task's verification as its verifier attested it on chain (:func:`attested_verification`)."""
    return attested_verification(upload, task, network())


@task(name="void_verification", cache_policy=NO_CACHE)
def void_verification_task(upload: Upload, task: int) -> VoidedVerification:
    """Prefect task: void, as Wasp, a verification nobody can judge with (:func:`void_verification`)."""
    return void_verification(upload, task, network())


@task(name="audit", cache_policy=NO_CACHE)
def audit_task(upload: Upload, shard: Shard, assignment: Assignment, training: Training) -> Verdict:
    """Prefect task: audit as Wasp."""
    return audit(upload, shard, assignment, training, network())

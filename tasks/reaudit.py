"""reaudit — anyone re-checks an order: Wasp's rules re-run on re-checked evidence; an auditor the
order names re-executes its verification.

The order comes from the client's record on the client's host, and from the chain and the store
everywhere else (the audit case Wasp signed with each verdict: ``bahen.audit.reconstruct``).
Every stage of the order is re-checked (:func:`stage_problems`): the artifacts it pinned re-hashed,
the commitments it made recomputed against the chain, the documents it signed or attested shown to
be its party's; an exported workspace runs each stage on its own, in the order's order
(:func:`check_stage`). The evidence is then gathered again from the store and the chain (every
signature and digest re-checked), Wasp's rules decide again, and the new decision is compared with
the stored signed verdict, which must be the one the chain recorded. Nothing is written on chain.

An auditor the order names (the spec's ``auditors``) holds the train split's key from the client
and, once the accepted task is settled, the model key from the delivering validator. With them it
re-runs the verifier on the chain's challenge (the same code the validators run, Wasp's pinned
step model included), compares every check with the validator's signed report, and lets Wasp's
rules decide on its own report in place of the validator's.
"""

import dataclasses
import itertools
import json
import math
from pathlib import Path

from contracts.models import OrderView
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from privacy.header import key_id, read_header
from privacy.identity import Identity
from privacy.signing import digest
from proof.bundle import ProofBundle
from proof.report import MEASURED, VerificationReport
from proof.scoring import PerformanceReport
from proof.wasp import Decision, Evidence, decide
from pydantic import BaseModel, Field
from storage.refs import ArtifactRef
from training.tolerance import replay_tolerance

from bahen.artifacts import get_signed, open_stored_grant
from bahen.audit import (
    AUDIT_STAGES,
    Audited,
    audited,
    delivering_validator,
    judged_case,
    recheck,
    stage_artifacts,
    workspace_store,
)
from bahen.errors import BahenError, user_errors
from bahen.network import Network
from bahen.records import Assignment, AuditCase, OrderRecord, Settled, Upload
from bahen.settings import load_settings
from tasks.audit import attested_on_chain, check_case, explain, gather, verification_attested
from tasks.inputs import check_inputs, signed_inputs
from tasks.runtime import network
from tasks.score import REPORT_PERFORMANCE, SignedScore, gathered
from tasks.verify import reexecute, verification_of, verifier_of


STALE = "a record written before it, or one that leaves it out"  # what a record without a fact on chain is


class AuditCheck(BaseModel):
    """One task's re-audit: the decision reached now against the one recorded, and what failed to re-check."""

    order_id: str
    task: int
    accepted: bool
    recorded_accepted: bool
    agrees: bool
    reasons: list[str]
    problems: list[str] = Field(description="Artifacts or commitments that did not re-check; empty when all held")


class StageCheck(BaseModel):
    """One stage of one task re-checked on its own: the artifacts it pinned re-hashed, its commitments recomputed."""

    order_id: str
    task: int
    stage: str
    artifacts: int = Field(description="Artifacts of the stage re-hashed")


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
    problems = rechecked(record, net)
    decision = decide(_gathered(record, net))
    checks = [AuditCheck(
        order_id=record.order_id, task=assignment_of(record).task, accepted=decision.accepted,
        recorded_accepted=record.verdict.accepted, reasons=explain(decision.reasons), problems=problems,
        agrees=not problems and decision.accepted == record.verdict.accepted,
    )]
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


class CheckAgreement(BaseModel):
    """One check of the verification as the auditor re-executed it and as the validator reported it."""

    model_config = MEASURED

    name: str
    passed: bool
    recorded_passed: bool | None = Field(description="None when the validator's report has no check of this name")
    observed: float
    recorded_observed: float | None


class ReverifyCheck(BaseModel):
    """An auditor's re-execution of one task's verification against the validator's report and Wasp's verdict."""

    model_config = MEASURED

    order_id: str
    task: int
    auditor: str
    passed: bool = Field(description="Whether the auditor's re-execution passed every decisive check")
    recorded_passed: bool = Field(description="Whether the validator's signed report did")
    accepted: bool = Field(description="Wasp's rules on the auditor's report in place of the validator's")
    recorded_accepted: bool
    checks: list[CheckAgreement]
    agrees: bool
    problems: list[str] = Field(description="Where the re-execution and the recorded reports or verdict differ")
    report: VerificationReport = Field(description="The auditor's own verification report")


def stage_problems(record: Audited, stage: str, net: Network) -> list[str]:
    """What does not hold of one of the record's stages (``bahen.audit.AUDIT_STAGES``): the artifacts it pinned
    re-hashed and the commitments it made recomputed (``bahen.audit.recheck``); and for ``validate``, every
    part of the record shown to be of its order, and the upload the one its client signed into the dataset
    manifest and the chain fixes (``tasks.inputs.signed_inputs``); for ``train``, the case shown to be the
    task's own as Wasp checks it before it judges (``tasks.audit.check_case``: the worker the chain drew, its
    signed and committed proof and challenge response, the validators in the chain's slot order, every
    grant wrapped for this order to the party it is filed under); for ``verify``, the verification report
    signed by the task's verifier and attested on chain for this order, task, challenge seed and committed
    root, and the record's account of it the report's own; for ``score``, every performance report signed by
    the validator of its slot and attested on chain for this task, and the record's figures the ones those
    reports give; for ``audit``, a verdict the chain records held by the record, Wasp's rules re-run on the
    case Wasp signed reaching the very decision it signed, the record's account of the verdict that
    decision's, and a client's record of the settlement the chain's. A record with a verdict must hold
    every stage's result."""
    problems = recheck(record, net.store, net.market, (stage,))
    task = _task_of(record)
    part = {"train": "training", "verify": "verification", "score": "scores"}.get(stage)
    judged = None not in (record.shard, record.training, record.verification, record.scores)
    try:
        order = net.market.order(bytes.fromhex(record.order_id[2:]))
        if task >= len(order.tasks):
            return [*problems, f"{stage}: the record is of task {task}, which order {record.order_id} does not have"]
        if part and record.verdict is not None and None in (record.shard, getattr(record, part)):
            return [*problems, f"{stage}: the record holds a verdict but no {part if record.shard else 'shard'}"]
        if stage == "validate" and record.upload is not None:
            problems += [f"validate: the record's {name} is of order {other.order_id}"
                         for name in ("upload", "shard", "training", "verification", "scores", "verdict", "delivery")
                         if (other := getattr(record, name)) is not None and other.order_id.lower() != record.order_id.lower()]
            signed_inputs(record.upload, task, net)
            if isinstance(record, OrderRecord):  # the client's record keeps its spec: the one the chain fixes
                check_inputs(record.spec, record.upload, task, net)
        elif stage == "train" and None not in (record.upload, record.training, record.shard):
            check_case(record.upload, record.shard, assignment_of(record), record.training, net)
        elif stage == "verify" and record.verification is not None:
            problems += _verify_problems(record, net, order, task)
        elif stage == "score" and record.scores is not None and record.shard is not None:
            problems += _score_problems(record, net, task)
        elif stage == "audit" and record.verdict is None and order.tasks[task].verdict != "none":
            problems.append(f"audit: Wasp recorded a verdict of task {task} on chain ({order.tasks[task].wasp_verdict}), "
                            f"the record holds none: {STALE}")
        elif stage == "audit" and judged and record.verdict is not None:
            problems += _audit_problems(record, net)
        if stage == "audit" and isinstance(record, OrderRecord):
            problems += _settled_problems(record, net, order) + _delivered_problems(record, net, order, task)
    except user_errors() as exc:
        problems.append(f"{stage}: {exc}")
    return problems


def _score_problems(record: Audited, net: Network, task: int) -> list[str]:
    """The score stage's: every performance report the record names signed by the validator of the slot it is
    named under and attested on chain for this task, and the record's figures (each validator's accuracy and
    loss, their median, the outliers) the ones those reports give (``tasks.score.gathered``, which made them).

    A report of another model than the proof's final one is its validator's doing, not the record's: the
    record carries what was attested, and Wasp's evidence leaves it out (``tasks.audit.gather``)."""
    slots, oid, reports = {s.name: s for s in record.shard.validators}, bytes.fromhex(record.order_id[2:]), record.scores.reports
    scored, unattested = [], []
    for name, ref in reports.items():
        try:
            report, doc = get_signed(net.store, ref, PerformanceReport, expected_signer=slots[name].address)
            signed = attested_on_chain(net, oid, task, REPORT_PERFORMANCE, slots[name].address, doc.digest)
        except (KeyError, *user_errors()):
            signed = False
        if signed:
            scored.append(SignedScore(validator=name, report=report, ref=ref))
        else:
            unattested.append(name)
    if unattested:
        return [f"score: {len(unattested)} of {len(reports)} performance reports ({', '.join(unattested)}) are not signed "
                "by the validator of the slot they are named under and attested on chain for this task"]
    told, signed = _plain(record.scores), _plain(gathered(record.order_id, scored))
    return [f"score: the record's {field} {told[field]} is not the {signed[field]} its signed performance reports give"
            for field in told if told[field] != signed[field]]


def _audit_problems(record: Audited, net: Network) -> list[str]:
    """The audit stage's: Wasp's rules, re-run on the case Wasp signed (the record when it is that case, which
    ``bahen.audit.audited`` returns only once it is shown to be signed by Wasp's role and of the chain's
    verdict; else the one found by the verdict on chain: ``bahen.audit.judged_case``), reach the very decision
    Wasp signed, its reasons and model report included, and the record's account of the verdict is that
    decision's.

    Exact: the rules are a function of the case's evidence, which the chain and the store hold as Wasp read it
    (a report is attested once, a verification only before the verdict), so an honest Wasp's decision is
    reached again bit for bit, while one that signed reasons or figures its evidence does not give, or a case
    that holds other evidence than Wasp judged (a score left out), is named."""
    case = record if isinstance(record, AuditCase) else judged_case(record.order_id, _task_of(record), net.store,
                                                                    net.market)
    signed, _ = get_signed(net.store, case.verdict.verdict, Decision)
    again = decide(_gathered(case, net)).model_copy(update={"nonce": signed.nonce})
    problems = [f"audit: Wasp's rules, re-run on the case Wasp signed, {found}" for found in _differences(again, signed)]
    told = record.verdict
    if (told.accepted, told.reasons, _plain(told.model_report)) != \
            (signed.accepted, explain(signed.reasons), _plain(signed.model_report)):
        problems.append("audit: the record's account of the verdict (its decision, reasons or model report) is not the "
                        "decision Wasp signed")
    return problems


def _settled_problems(record: OrderRecord, net: Network, order: OrderView) -> list[str]:
    """The client's record of the settlement against the chain's (``bahen.records.Settled.from_chain``, which made it):
    what was paid, slashed and refunded, every credit and slash of the order and the verdicts disputes overturned.
    Nothing of the order moves once it is settled, so the two are the same; a record without one of an order the
    chain settled is named as one that leaves a verdict out is."""
    oid = bytes.fromhex(record.order_id[2:])
    settlement = net.market.settlement_of(oid)
    if record.settled is None:
        return [] if settlement is None else [f"audit: the chain settled order {record.order_id}, the record holds no "
                                              f"settlement: {STALE}"]
    if settlement is None:
        return [f"audit: the record holds a settlement of order {record.order_id}, which the chain has not settled"]
    told, chain = _plain(record.settled), _plain(Settled.from_chain(settlement, net.market.ledger(oid), order))
    if wrong := [field for field in told if told[field] != chain[field]]:
        return [f"audit: the record's settlement is not the chain's in {', '.join(wrong)}"]
    return []


def _delivered_problems(record: OrderRecord, net: Network, order: OrderView, task: int) -> list[str]:
    """A client's record without the delivery of a task's model key that its delivering validator recorded on
    chain. (A workspace exported before the delivery rightly pins none, so only the client's record is held to it.)"""
    if record.delivery is not None or record.shard is None or (deliverer := delivering_validator(record.shard, order)) is None:
        return []
    if not any(net.market.delivery_of(bytes.fromhex(record.order_id[2:]), task, deliverer.address)):
        return []
    return [f"audit: {deliverer.address} recorded on chain the delivery of task {task}'s model key, the record holds "
            f"none: {STALE}"]


def _differences(again: Decision, signed: Decision) -> list[str]:
    """How the decision the rules reach again differs from the one Wasp signed, in words; empty when they are the same."""
    if digest(again) == digest(signed):
        return []
    found = []
    if again.accepted != signed.accepted:
        found.append(f"decide {'accepted' if again.accepted else 'rejected'} where Wasp signed "
                     f"{'accepted' if signed.accepted else 'rejected'}")
    for ours, theirs in itertools.zip_longest([*again.reasons, *again.model_report.findings],
                                              [*signed.reasons, *signed.model_report.findings]):
        if ours != theirs:
            found.append(f"find {ours.rule + ': ' + ours.detail if ours else 'nothing'} where Wasp signed "
                         f"{theirs.rule + ': ' + theirs.detail if theirs else 'nothing'}")
    ours, theirs = _plain(again.model_report), _plain(signed.model_report)
    found += [f"measure {field} {ours[field]} where Wasp signed {theirs[field]}" for field in ours
              if field != "findings" and ours[field] != theirs[field]]
    return found or ["do not reach the decision Wasp signed"]


def _plain(model: BaseModel) -> dict:
    """``model`` as the JSON it is signed and stored as, where a NaN (a figure nobody could measure) equals itself."""
    return json.loads(model.model_dump_json())


def _verify_problems(record: Audited, net: Network, order: OrderView, task: int) -> list[str]:
    """The verify stage's: the report the record names attested by the task's verifier
    (``tasks.audit.verification_attested``), and the record's account of it the report's own."""
    verifier = verifier_of(order, task)
    report, doc = get_signed(net.store, record.verification.report, VerificationReport)
    if not verification_attested(net, report, doc, order, task):
        return [f"verify: the verification report is not one that task {task}'s verifier {verifier} signed and "
                "attested on chain for this order, task, challenge seed and committed root"]
    told, signed = (_plain(v) for v in (record.verification,
                                        verification_of(verifier, report, record.verification.report, doc)))
    for account in (told, signed):  # addresses and digests in any letter case
        account.update({f: account[f].lower() for f in ("order_id", "verifier", "digest")})
    if wrong := [field for field in told if told[field] != signed[field]]:
        return [f"verify: the record's account of the verification is not the signed report's in {', '.join(wrong)}"]
    return []


def _gathered(record: Audited, net: Network) -> Evidence:
    """Wasp's evidence of the record's task, gathered again from the store and the chain (``tasks.audit.gather``)."""
    if _task_of(record) >= len(net.market.order(bytes.fromhex(record.order_id[2:])).tasks):
        raise ReauditDisagreesError(f"the record of order {record.order_id} is of task {_task_of(record)}, which the "
                                    "order does not have: nothing can be re-checked")
    return gather(record.upload, record.shard, assignment_of(record), record.training, record.verification,
                  record.scores, net)


def _task_of(record: Audited) -> int:
    """The task the record is of (the first, before any was trained)."""
    return record.training.task if record.training else 0


def rechecked(record: Audited, net: Network) -> list[str]:
    """What does not hold of any of the record's stages (:func:`stage_problems`), stage by stage."""
    return [problem for stage in AUDIT_STAGES for problem in stage_problems(record, stage, net)]


def check_stage(order_id: str, stage: str, workspace: str | None = None) -> list[StageCheck]:
    """Re-check ``stage`` of every task of ``order_id`` this host can audit (on the artifacts an exported
    ``workspace`` pulled, when given); raise :class:`ReauditDisagreesError` naming what did not hold.

    Reads the chain and the store (or the workspace) only, and runs no Prefect flow: a workspace's
    ``dvc repro`` runs it once per stage, in the order's order, before the whole re-audit.
    """
    if stage not in AUDIT_STAGES:
        raise BahenError(f"{stage!r} is no stage of an order: one of {', '.join(AUDIT_STAGES)}")
    net = network()
    if workspace is not None:
        net = dataclasses.replace(net, store=workspace_store(Path(workspace)))
    checks = []
    for record in audited(order_id, load_settings(), None if workspace is None else Path(workspace)):
        task = _task_of(record)
        if problems := stage_problems(record, stage, net):
            raise ReauditDisagreesError(f"the {stage} stage of order {order_id} task {task} does not re-check: "
                                        + "; ".join(problems))
        checks.append(StageCheck(order_id=order_id, task=task, stage=stage,
                                 artifacts=len(stage_artifacts(record, net.store, stage))))
    return checks


def assignment_of(record: Audited) -> Assignment:
    """The one assignment the record holds for the task it trained."""
    assigned = [a for a in record.shard.assignments if a.task == record.training.task]
    if len(assigned) != 1:
        raise ReauditDisagreesError(f"the record of order {record.order_id} names {len(assigned)} workers for task "
                                    f"{record.training.task}, not the one the chain drew: nothing can be re-checked")
    return assigned[0]


class NotAnAuditorError(BahenError):
    """This host holds no key of an auditor the order names, or the order has not released the keys to it yet."""


def auditor_of(upload: Upload, net: Network) -> Identity:
    """The identity of this host that the order names as an auditor (its train key was granted to it)."""
    if not upload.auditor_grants:
        raise NotAnAuditorError(
            f"order {upload.order_id} names no auditors, so nobody outside it holds its keys: only its client names "
            "them (the order spec's `auditors`) before the order opens; `bahen audit check` re-checks it without keys")
    mine = {net.keystore.public(name).address.lower(): name for name in net.keystore.names()}
    for address in upload.auditor_grants:
        if address.lower() in mine:
            return net.party(mine[address.lower()])
    raise NotAnAuditorError(
        f"this host ({net.keystore.root}) holds no key of the auditors order {upload.order_id} names "
        f"({', '.join(upload.auditor_grants)}): run it on an auditor's host, with its BAHEN_HOME")


class FaultyDeliveryError(BahenError):
    """The model key a validator released to an auditor is not the key the worker's proof is sealed under."""


def _seals_the_proof(key: bytes, record: Audited, net: Network) -> bool:
    """Whether ``key`` is the one the worker's step log is sealed under (its header names the key's id).
    A proof that cannot be read at all is not the delivery's fault: the re-execution reports it."""
    try:
        bundle, _ = get_signed(net.store, record.training.bundle, ProofBundle, expected_signer=record.training.worker)
        sealed = read_header(net.store.get(bundle.step_log), artifact=bundle.step_log.name).key_id
    except user_errors():
        return True
    return sealed == key_id(key)


def reverify(record: Audited, net: Network) -> ReverifyCheck:
    """Re-execute the verification of the record's task as this host's auditor and compare it with what was recorded."""
    if record.verdict is None or record.verification is None or record.scores is None or record.training is None:
        raise IncompleteOrderError(
            f"order {record.order_id} is {record.status!r} with no verdict: wait for it to be audited, then re-verify")
    auditor = auditor_of(record.upload, net)
    order_id, task = record.order_id, record.training.task
    grant = _grant_to(record.delivery.auditor_grants, auditor.address) if record.delivery else None
    if grant is None:
        raise NotAnAuditorError(
            f"no validator has released task {task}'s model key of order {order_id} to {auditor.address} "
            f"({record.status}): it is released to the order's auditors with the client's once an accepted task is "
            "settled, and the delivering validator records its delivery on chain; a rejected task's model is never "
            "released, and only its worker can dispute it")
    train_key = open_stored_grant(net.store, _grant_to(record.upload.auditor_grants, auditor.address), auditor,
                                  order_id=order_id)
    model_key = open_stored_grant(net.store, grant, auditor, order_id=order_id)
    if not _seals_the_proof(model_key, record, net):
        raise FaultyDeliveryError(
            f"the model key validator {record.delivery.validator} released to {auditor.address} for order {order_id} "
            f"task {task} does not open the worker's proof: the delivery is faulty, not the proof; nothing was re-executed")
    spec, _, _ = signed_inputs(record.upload, task, net)
    report = reexecute(spec, record.upload, record.training, net, train_key=train_key,
                       open_model_key=lambda: model_key)
    recorded, _ = get_signed(net.store, record.verification.report, VerificationReport,
                             expected_signer=record.verification.verifier)
    evidence = _gathered(record, net)
    # The auditor vouches for its own report; whether the validator's was attested is the verify stage's question.
    accepted = decide(evidence.model_copy(update={"verification": report, "verification_attested": True})).accepted
    checks, problems = _compare(report, recorded, exact=replay_tolerance(spec.profile).step == 0)
    problems += rechecked(record, net)
    if accepted != record.verdict.accepted:
        problems.append(f"Wasp's rules on the re-executed report decide {'accepted' if accepted else 'rejected'}, "
                        f"the recorded verdict {'accepted' if record.verdict.accepted else 'rejected'}")
    return ReverifyCheck(
        order_id=order_id, task=task, auditor=auditor.address, passed=report.passed, recorded_passed=recorded.passed,
        accepted=accepted, recorded_accepted=record.verdict.accepted, checks=checks, agrees=not problems,
        problems=problems, report=report,
    )


def _compare(report: VerificationReport, recorded: VerificationReport, *,
             exact: bool) -> tuple[list[CheckAgreement], list[str]]:
    """Every check of the re-executed ``report`` beside the ``recorded`` one's, and where the two differ.

    Both must check the same task on the same challenge and root, with the same thresholds and the
    same decisive checks; under an ``exact`` profile (bitwise replay) every observed number must be
    the same too, so a validator that passes checks without running them is found out.
    """
    problems = [f"the validator's report is of {field} {theirs!r}, the task's is {ours!r}"
                for field, ours, theirs in (("order", report.order_id, recorded.order_id),
                                            ("task", report.task, recorded.task),
                                            ("challenge seed", report.challenge_seed, recorded.challenge_seed),
                                            ("Merkle root", report.merkle_root, recorded.merkle_root))
                if ours != theirs]
    theirs = {c.name: c for c in recorded.checks}
    for c in report.checks:
        other = theirs.get(c.name)
        if other is None:
            continue
        if c.decisive != other.decisive or not _same(c.threshold, other.threshold):
            problems.append(f"check {c.name}: threshold {other.threshold:g} ({'decisive' if other.decisive else 'weak'}) "
                            f"in the validator's report, {c.threshold:g} ({'decisive' if c.decisive else 'weak'}) "
                            "on re-execution")
        elif exact and not _same(c.observed, other.observed):
            problems.append(f"check {c.name}: observed {other.observed:.6g} in the validator's report, {c.observed:.6g} "
                            "on re-execution of the same bits")
    checks = [CheckAgreement(name=c.name, passed=c.passed, observed=c.observed,
                             recorded_passed=theirs[c.name].passed if c.name in theirs else None,
                             recorded_observed=theirs[c.name].observed if c.name in theirs else None)
              for c in report.checks]
    problems += [f"check {c.name}: {'passes' if c.passed else 'fails'} on re-execution, "
                + ("the validator's report has no such check" if c.recorded_passed is None
                   else f"{'passed' if c.recorded_passed else 'failed'} in the validator's report")
                for c in checks if c.passed != c.recorded_passed]
    problems += [f"check {name}: in the validator's report only" for name in sorted(theirs.keys() - {c.name for c in checks})]
    named = [c.name for c in recorded.checks]
    problems += [f"check {name}: the validator's report has it {named.count(name)} times" for name in sorted(set(named))
                 if named.count(name) > 1]
    if report.localiser != recorded.localiser or report.suspicious_steps != recorded.suspicious_steps:
        problems.append(f"Wasp's step model: the auditor's ({report.localiser[:12]}) adds steps {report.suspicious_steps}, "
                        f"the validator's ({recorded.localiser[:12]}) {recorded.suspicious_steps}")
    if recorded.claimed_final_loss is not None and not _same(report.claimed_final_loss, recorded.claimed_final_loss):
        problems.append(f"the worker's final loss: {recorded.claimed_final_loss:.6g} in the validator's report, "
                        f"{report.claimed_final_loss:.6g} in the worker's step log")
    if report.passed != recorded.passed:
        problems.append(f"the verification {'passes' if report.passed else 'fails'} on re-execution and "
                        f"{'passed' if recorded.passed else 'failed'} in the validator's report")
    return checks, problems


@task(name="reverify", cache_policy=NO_CACHE)
def reverify_task(record: Audited, workspace: str | None = None) -> ReverifyCheck:
    """Re-execute the verification of the record's task as this host's auditor (on the artifacts an exported
    ``workspace`` pulled, when given); raise :class:`ReauditDisagreesError` when it disagrees with the
    recorded reports or verdict."""
    net = network()
    if workspace is not None:
        net = dataclasses.replace(net, store=workspace_store(Path(workspace)))
    check = reverify(record, net)
    create_markdown_artifact(
        key=f"reverify-{record.order_id[2:14]}", description=f"Re-execution of order {record.order_id}'s verification",
        markdown=f"## Task {check.task}: re-executed by auditor {check.auditor}, "
        f"{'agrees' if check.agrees else 'DISAGREES'}\n\n| check | re-executed | validator |\n|---|---|---|\n"
        + "\n".join(f"| {c.name} | {_mark(c.passed)} {c.observed:.3g} | {_mark(c.recorded_passed)} "
                    f"{'' if c.recorded_observed is None else f'{c.recorded_observed:.3g}'} |" for c in check.checks)
        + "".join(f"\n- ✗ {p}" for p in check.problems),
    )
    if not check.agrees:
        raise ReauditDisagreesError(f"auditor {check.auditor}'s re-execution of order {record.order_id} task "
                                    f"{check.task} disagrees with what was recorded: " + "; ".join(check.problems))
    return check


def _same(a: float, b: float) -> bool:
    """The same number, NaN (evidence that could not be read) included."""
    return a == b or (math.isnan(a) and math.isnan(b))


def _grant_to(grants: dict[str, ArtifactRef], address: str) -> ArtifactRef | None:
    """The grant to ``address`` in ``grants``, whatever the case its keys were written in."""
    return next((ref for to, ref in grants.items() if to.lower() == address.lower()), None)


def _mark(passed: bool | None) -> str:
    return {True: "✓", False: "✗", None: "—"}[passed]

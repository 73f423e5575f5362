"""verify (checkpoint-sample-verify) — a validator checks a worker's proof against its commitment.

The challenge seed comes from the chain after the commitment, so the worker could not know which
segments and batches would be checked. The verifier first checks that what it was handed is the
task's own (``tasks.inputs``): the inputs the chain and the client's signed manifest fix, the
evidence its worker signed. Then it decrypts the train split and the proof's artifacts in memory,
runs every check, signs the report, names it in its own folder of the store by its digest and
records that digest on chain, where Wasp finds it (:func:`attested_report`).
"""

import os
from collections.abc import Callable
from typing import TypeVar

from contracts.errors import ChallengeNotReady
from contracts.models import OrderView
from prefect import task
from prefect.cache_policies import NO_CACHE
from privacy.errors import PrivacyError, WrongKeyError
from privacy.identity import Identity
from privacy.signing import SignedDocument
from proof.report import VerificationReport
from proof.verifier import verify_proof
from pydantic import BaseModel
from storage.errors import IntegrityError, StorageError, StoreUnavailableError
from storage.refs import ArtifactRef

from bahen.artifacts import PROOF_ROLE, get_decrypted, get_signed, open_stored_grant, signed
from bahen.audit import report_pointer
from bahen.network import Network
from bahen.records import Assignment, Shard, Training, Upload, ValidatorSlot, Verification
from bahen.spec import OrderSpec
from tasks.inputs import InputMismatch, chain_order, check_inputs, proof_key, worker_evidence
from tasks.runtime import network
from tasks.train import challenge_seed, load_initial, load_split, train_spec, verify_config

REPORT_VERIFICATION = 0

R = TypeVar("R", bound=BaseModel)  # a report a validator signs and attests: verification or performance


def reexecute(spec: OrderSpec, upload: Upload, training: Training, net: Network, *, train_key: bytes,
              open_model_key: Callable[[], bytes]) -> VerificationReport:
    """Check the task's proof against its commitment, re-executing what the chain's challenge selects.

    Shared by the order's verifier and a dispute's resolvers: only the way each gets its keys differs.
    The worker and the committed root are read from the chain, never from what was handed over, and
    the inputs and the worker's evidence must be the task's own (``tasks.inputs``): otherwise
    :class:`InputMismatch` says so and nothing is judged.
    """
    order_id, task = upload.order_id, training.task
    order = check_inputs(spec, upload, task, net)
    bundle, response = worker_evidence(training, order, task, net)
    committed = order.tasks[task].root.removeprefix("0x")
    seed = challenge_seed(net, bytes.fromhex(order_id[2:]), task)
    model = proof_key(open_model_key, bundle, order_id, task, net)
    X, y = load_split(net.store, train_key, upload, "train", spec)
    tspec = train_spec(spec, upload, task, net)
    return verify_proof(
        bundle, committed_root=committed, challenge_seed=seed, X=X, y=y, initial=load_initial(net.store, train_key, upload, tspec),
        fetch=lambda ref: get_decrypted(net.store, model, ref, order_id=order_id, role=PROOF_ROLE),
        config=verify_config(spec), expected_spec=tspec, response=response,
    )


def verify(spec: OrderSpec, upload: Upload, shard: Shard, assignment: Assignment, training: Training, net: Network) -> Verification:
    """Verify one task's proof as the order's verifier, its first validator on chain, and attest the signed
    report on chain (:func:`publish`). Run again, it returns the report the verifier attested."""
    if not shard.validators:
        raise InputMismatch(f"the shard handed over for order {upload.order_id} names no validator: nothing was judged")
    slot = shard.validators[0]
    order_id, task = upload.order_id, training.task
    if assignment.task != task:
        raise InputMismatch(f"the assignment handed over is of task {assignment.task}, the training of task {task}: "
                            "nothing was judged")
    if slot.address != (first := verifier_of(chain_order(upload, task, net), task)):
        raise InputMismatch(f"the shard handed over for order {order_id} names {slot.address} first, not the order's "
                            f"verifier, its first validator on chain ({first}): nothing was judged")
    verifier = net.party_at(slot.address, role="validator")
    if (done := attested_report(net, order_id, task, REPORT_VERIFICATION, verifier.address, VerificationReport)) is not None:
        return verification_of(verifier.address, *done)
    train_key = open_stored_grant(net.store, slot_grant(slot, "train", order_id), verifier, order_id=order_id)
    report = reexecute(spec, upload, training, net, train_key=train_key,
                       open_model_key=lambda: model_key(net, training, verifier))
    return verification_of(verifier.address, *publish(
        net, verifier, report, kind=REPORT_VERIFICATION, name=f"order {order_id[:10]}/task {task}/verification report"))


def slot_grant(slot: ValidatorSlot, role: str, order_id: str) -> ArtifactRef:
    """The grant of the ``role`` split the client wrapped to the validator of ``slot``."""
    if role not in slot.grants:
        raise InputMismatch(f"the validator slot handed over for order {order_id} holds no grant of the {role} split: "
                            "nothing was judged. Hand over the order's shard")
    return slot.grants[role]


def verifier_of(order: OrderView, task: int) -> str | None:
    """The verifier of the order's ``task``: the validator whose verification of it is on chain, else the
    order's verifier, its first validator slot on chain (drawn by the chain, so nobody picks it, and drawn
    again when it leaves a committed task unverified past its window)."""
    if int(order.tasks[task].verifier, 16):
        return order.tasks[task].verifier
    return order.validators[0].validator if order.validators else None


def verification_of(verifier: str, report: VerificationReport, ref: ArtifactRef, doc: SignedDocument) -> Verification:
    """The record of a verification report ``verifier`` signed and stored at ``ref``."""
    return Verification(
        order_id=report.order_id, task=report.task, verifier=verifier, report=ref, digest=doc.digest,
        passed=report.passed, checks=[c.model_dump() for c in report.checks], cost_fraction=report.cost.fraction_of_training,
    )


def publish(net: Network, validator: Identity, report: R, *, kind: int, name: str) -> tuple[R, ArtifactRef, SignedDocument]:
    """Sign ``report`` (of the task its ``order_id`` and ``task`` name) as ``validator`` with a fresh nonce,
    name it in the validator's folder of the store by its digest (:func:`bahen.audit.report_pointer`),
    store it, then attest the digest on chain: once the chain holds it, anyone finds the report by it
    (:func:`attested_report`). The nonce keeps the name unknowable until the validator writes it."""
    report = report.model_copy(update={"nonce": os.urandom(16).hex()})
    data, ref, doc = signed(validator, report, name=name)
    net.store.put_pointer(validator.address, report_pointer(report.order_id, report.task, kind, doc.digest), ref)
    net.store.put(data, name=name)
    attest(net, validator, report.order_id, report.task, kind, doc.digest)
    return report, ref, doc


def attested_report(net: Network, order_id: str, task: int, kind: int, validator: str,
                    model: type[R]) -> tuple[R, ArtifactRef, SignedDocument] | None:
    """The report of ``kind`` that ``validator`` attested on chain for the task, read by the name it gave it
    (:func:`publish`), its signer and digest checked; None while it attested none.

    Raises a ``StorageError`` or ``PrivacyError`` when the validator attested a report it has not published whole.
    """
    recorded = "0x" + net.market.report_of(bytes.fromhex(order_id[2:]), task, kind, validator).hex()
    if int(recorded, 16) == 0:
        return None
    ref = net.store.get_pointer(validator, report_pointer(order_id, task, kind, recorded))
    report, doc = get_signed(net.store, ref, model, expected_signer=validator)
    if doc.digest.lower() != recorded:
        raise IntegrityError(f"the report {validator} named for its attestation of order {order_id} task {task}",
                             f"its digest is {doc.digest}, the chain records {recorded}")
    return report, ref, doc


def checked_task(net: Network, report: VerificationReport, order_id: str, task: int, order: OrderView) -> bool:
    """Whether ``report`` checked the order's ``task`` as the chain fixes it: this order and task, the chain's
    challenge seed (none before the commitment), the committed root."""
    try:
        seed = net.market.challenge_seed(bytes.fromhex(order_id[2:]), task).hex()
    except ChallengeNotReady:
        seed = None
    return (report.order_id, report.task, report.challenge_seed, report.merkle_root) == (
        order_id, task, seed, order.tasks[task].root.removeprefix("0x"))


class UnusableVerification(InputMismatch):
    """The task's verifier attested on chain a verification report nobody can judge with: not in the store
    whole or not its own, or the check of another order, task, challenge or root. Nothing was judged; past
    the task's scoring window Wasp voids it on chain and the next verifier drawn verifies
    (``tasks.audit.void_verification``)."""


def usable_verification(net: Network, order_id: str, task: int, order: OrderView
                        ) -> tuple[VerificationReport, ArtifactRef, SignedDocument] | None:
    """The verification report that the task's verifier (:func:`verifier_of`) attested on chain, read from the
    store, its signer and digest checked (:func:`attested_report`) and bound to the task: this order and task,
    the chain's challenge seed, the committed root. None while it attested none.

    Raises :class:`UnusableVerification` when the report is not in the store whole, or another's, or of
    another task; a store that cannot be reached raises its own error, which says nothing of the verifier.
    """
    verifier = verifier_of(order, task)
    named = f"the verification report that {verifier}, the verifier of order {order_id}, attested for task {task}"
    try:
        found = attested_report(net, order_id, task, REPORT_VERIFICATION, verifier, VerificationReport)
    except StoreUnavailableError:
        raise
    except (PrivacyError, StorageError, ValueError) as exc:
        raise UnusableVerification(f"{named} cannot be read ({exc})") from None
    if found is None:
        return None
    report = found[0]
    if not checked_task(net, report, order_id, task, order):
        raise UnusableVerification(f"{named} checked another task: order {report.order_id} task {report.task}, "
                                   f"challenge seed {report.challenge_seed}, root {report.merkle_root}")
    return found


def attest(net: Network, validator: Identity, order_id: str, task: int, kind: int, doc_digest: str) -> None:
    """Record a report's digest on chain with ``validator``'s attestation, bound to this order, task, kind,
    chain and market (EIP-712)."""
    oid, report_digest = bytes.fromhex(order_id[2:]), bytes.fromhex(doc_digest[2:])
    signature = net.market.sign_report(validator.account, order_id=oid, task=task, kind=kind, digest=report_digest)
    net.market.submit_report(validator.account, order_id=oid, task=task, kind=kind, digest=report_digest, signature=signature)


def model_key(net: Network, training: Training, party: Identity) -> bytes:
    """The worker's model key of the task, from the grant it wrapped to ``party`` (a validator, or itself).

    Raises :class:`WrongKeyError` when the worker wrapped none to it: a validator that cannot read
    the proof cannot vouch for it, nor deliver the model.
    """
    ref = training.model_grants.get(party.address)
    if ref is None:
        raise WrongKeyError(f"the model key of order {training.order_id}, task {training.task}",
                            f"the worker wrapped none to {party.name} ({party.address})")
    return open_stored_grant(net.store, ref, party, order_id=training.order_id)


@task(name="verify", cache_policy=NO_CACHE)
def verify_task(spec: OrderSpec, upload: Upload, shard: Shard, assignment: Assignment, training: Training) -> Verification:
    """Prefect task: verify as the order's first validator."""
    return verify(spec, upload, shard, assignment, training, network())

"""verify (checkpoint-sample-verify) — a validator checks a worker's proof against its commitment.

The challenge seed comes from the chain after the commitment, so the worker could not know which
segments and batches would be checked. The verifier first checks that the inputs it was handed are
the ones the chain and the client's signed manifest fix, then decrypts the train split and the
proof's artifacts in memory, runs every check, signs the report and records its digest on chain.
"""

from collections.abc import Callable

from contracts.models import TaskView
from prefect import task
from prefect.cache_policies import NO_CACHE
from privacy.errors import PrivacyError, WrongKeyError
from privacy.identity import Identity
from privacy.signing import digest
from proof.bundle import ProofBundle
from proof.report import CheckResult, VerificationCost, VerificationReport
from proof.response import Response
from proof.verifier import verify_proof
from storage.errors import StorageError
from storage.manifest import Manifest

from bahen.artifacts import PROOF_ROLE, get_decrypted, get_signed, open_stored_grant, put_signed
from bahen.errors import BahenError
from bahen.network import Network
from bahen.records import Assignment, Shard, Training, Upload, Verification
from bahen.spec import OrderSpec
from tasks.runtime import network
from tasks.train import challenge_seed, load_initial, load_split, train_spec, verify_config

REPORT_VERIFICATION = 0


class InputMismatch(BahenError):
    """What a validator was handed does not match what the chain and the client's signed manifest fix."""


def check_inputs(spec: OrderSpec, upload: Upload, training: Training, net: Network) -> TaskView:
    """The task as the chain holds it, once the order's inputs are shown to be the ones it fixes.

    The spec must hash to the order's on-chain spec hash; the splits, their shape and class count
    must be those of the dataset manifest signed by the order's client, so no party that hands a
    validator its inputs (the client, a disputer) can make honest work fail re-execution.
    """
    oid = bytes.fromhex(upload.order_id[2:])
    order = net.market.order(oid)
    if order.spec_hash != "0x" + digest(spec).hex():
        raise InputMismatch(f"the order spec does not hash to order {upload.order_id}'s spec hash {order.spec_hash}")
    try:
        manifest, _ = get_signed(net.store, upload.manifest, Manifest, expected_signer=order.client)
    except (PrivacyError, StorageError, ValueError) as exc:
        raise InputMismatch(f"the dataset manifest of order {upload.order_id} is not its client's: {exc}") from None
    fixed = {e.role: e.ref for e in manifest.entries} | {
        k: manifest.meta.get(k) for k in ("input_shape", "num_classes", "initial_weights")}
    handed = {"train": upload.train, "holdout": upload.holdout, "weights": upload.weights, "input_shape": upload.input_shape,
              "num_classes": upload.num_classes, "initial_weights": upload.initial_weights}
    wrong = sorted(k for k, v in handed.items() if fixed.get(k) != v)
    if manifest.order_id != upload.order_id or wrong:
        raise InputMismatch(f"the upload of order {upload.order_id} differs from its client-signed manifest in "
                            f"{', '.join(wrong) or 'order id'}")
    if not 0 <= training.task < len(order.tasks):
        raise InputMismatch(f"order {upload.order_id} has no task {training.task}")
    return order.tasks[training.task]


def signed_spec(upload: Upload, net: Network) -> tuple[OrderSpec, Manifest]:
    """The order spec the client signed into its dataset manifest, once shown to hash to the order's spec
    hash on chain, with the manifest: what a party handed no spec (an auditor, a delivering validator) reads."""
    order = net.market.order(bytes.fromhex(upload.order_id[2:]))
    try:
        manifest, _ = get_signed(net.store, upload.manifest, Manifest, expected_signer=order.client)
        spec = OrderSpec.model_validate(manifest.meta["spec"])
    except (PrivacyError, StorageError, ValueError, KeyError) as exc:
        raise InputMismatch(f"the dataset manifest of order {upload.order_id} holds no order spec its client signed "
                            f"({type(exc).__name__}: {exc})") from None
    if order.spec_hash != "0x" + digest(spec).hex():
        raise InputMismatch(f"the order spec in the dataset manifest of order {upload.order_id} does not hash to "
                            f"its spec hash {order.spec_hash} on chain")
    return spec, manifest


def reexecute(spec: OrderSpec, upload: Upload, training: Training, net: Network, *, train_key: bytes,
              open_model_key: Callable[[], bytes]) -> VerificationReport:
    """Check the task's proof against its commitment, re-executing what the chain's challenge selects.

    Shared by the order's verifier and a dispute's resolvers: only the way each gets its keys differs.
    The worker and the committed root are read from the chain, never from what was handed over.
    """
    order_id, task = upload.order_id, training.task
    view = check_inputs(spec, upload, training, net)
    committed = view.root.removeprefix("0x")
    seed = challenge_seed(net, bytes.fromhex(order_id[2:]), task)
    try:
        bundle, _ = get_signed(net.store, training.bundle, ProofBundle, expected_signer=view.worker)
    except (PrivacyError, StorageError, ValueError) as exc:
        return refused_report(order_id, task, seed, committed, "manifest-signature", "untrusted manifests",
                              f"{training.bundle.name}: {exc}")
    try:
        model = open_model_key()
    except (PrivacyError, StorageError) as exc:
        return refused_report(order_id, task, seed, committed, "model-key-grant", "unopenable model key grants", str(exc))
    X, y = load_split(net.store, train_key, upload, "train")
    tspec = train_spec(spec, upload, task, net)
    return verify_proof(
        bundle, committed_root=committed, challenge_seed=seed, X=X, y=y, initial=load_initial(net.store, train_key, upload, tspec),
        fetch=lambda ref: get_decrypted(net.store, model, ref, order_id=order_id, role=PROOF_ROLE),
        config=verify_config(spec), expected_spec=tspec,
        response=worker_response(net, training, view.worker),
    )


def verify(spec: OrderSpec, upload: Upload, shard: Shard, assignment: Assignment, training: Training, net: Network) -> Verification:
    """Verify one task's proof as the order's first validator and attest the signed report on chain."""
    slot = shard.validators[0]
    verifier = net.party_at(slot.address, role="validator")
    order_id = upload.order_id
    train_key = open_stored_grant(net.store, slot.grants["train"], verifier, order_id=order_id)
    report = reexecute(spec, upload, training, net, train_key=train_key,
                       open_model_key=lambda: model_key(net, training, verifier))
    ref, doc = put_signed(net.store, verifier, report, name=f"order {order_id[:10]}/task {assignment.task}/verification report")
    attest(net, verifier, order_id, assignment.task, REPORT_VERIFICATION, doc.digest)
    return Verification(
        order_id=order_id, task=assignment.task, verifier=verifier.address, report=ref, digest=doc.digest,
        passed=report.passed, checks=[c.model_dump() for c in report.checks], cost_fraction=report.cost.fraction_of_training,
    )


def attest(net: Network, validator: Identity, order_id: str, task: int, kind: int, doc_digest: str) -> None:
    """Record a report's digest on chain with ``validator``'s attestation, bound to this order, task, kind,
    chain and market (EIP-712)."""
    oid, report_digest = bytes.fromhex(order_id[2:]), bytes.fromhex(doc_digest[2:])
    signature = net.market.sign_report(validator.account, order_id=oid, task=task, kind=kind, digest=report_digest)
    net.market.submit_report(validator.account, order_id=oid, task=task, kind=kind, digest=report_digest, signature=signature)


def worker_response(net: Network, training: Training, worker: str) -> Response | None:
    """The worker's signed challenge response, or None when it gave none or it is not signed by the worker.

    Without a response every spot-checked step fails, naming the states that were not revealed.
    """
    if training.response is None:
        return None
    try:
        response, _ = get_signed(net.store, training.response, Response, expected_signer=worker)
    except (PrivacyError, StorageError, ValueError):
        return None
    return response


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


def refused_report(order_id: str, task: int, seed: bytes, root: str, check: str, metric: str, detail: str) -> VerificationReport:
    """A failed report for a proof that cannot be checked at all: its manifest or its model key is unusable."""
    check = CheckResult(
        name=check, metric=metric, threshold=0, observed=1, passed=False, decisive=True, detail=detail,
        cost_steps=0, seconds=0.0,
    )
    return VerificationReport(
        order_id=order_id, task=task, challenge_seed=seed.hex(), merkle_root=root.removeprefix("0x"), checks=[check],
        passed=False, cost=VerificationCost(replayed_steps=0, forward_samples=0, seconds=0.0, fraction_of_training=0.0),
        artifacts={},
    )


@task(name="verify", cache_policy=NO_CACHE)
def verify_task(spec: OrderSpec, upload: Upload, shard: Shard, assignment: Assignment, training: Training) -> Verification:
    """Prefect task: verify as the order's first validator."""
    return verify(spec, upload, shard, assignment, training, network())

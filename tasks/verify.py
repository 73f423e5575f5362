"""verify (checkpoint-sample-verify) — a validator checks a worker's proof against its commitment.

The challenge seed comes from the chain after the commitment, so the worker could not know which
segments and batches would be checked. The verifier decrypts the train split and the proof's
artifacts in memory, runs every check, signs the report and records its digest on chain.
"""

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from privacy.errors import PrivacyError, WrongKeyError
from privacy.identity import Identity
from proof.bundle import ProofBundle
from proof.report import CheckResult, VerificationCost, VerificationReport
from proof.response import Response
from proof.verifier import verify_proof
from storage.errors import StorageError

from bahen.artifacts import PROOF_ROLE, get_decrypted, get_signed, open_stored_grant, put_signed
from bahen.network import Network
from bahen.records import Assignment, Shard, Training, Upload, Verification
from bahen.spec import OrderSpec
from tasks.runtime import network, order_book, timed
from tasks.train import challenge_seed, load_split, train_spec, verify_config

REPORT_VERIFICATION = 0


def verify(spec: OrderSpec, upload: Upload, shard: Shard, assignment: Assignment, training: Training, net: Network) -> Verification:
    """Verify one task's proof as the order's first validator and attest the signed report on chain."""
    slot = shard.validators[0]
    verifier = net.party(slot.name)
    order_id = upload.order_id
    oid = bytes.fromhex(order_id[2:])
    keys = {role: open_stored_grant(net.store, ref, verifier, order_id=order_id) for role, ref in slot.grants.items()}
    committed = net.market.order(oid).tasks[assignment.task].root
    seed = challenge_seed(net, oid, assignment.task)
    try:
        bundle, _ = get_signed(net.store, training.bundle, ProofBundle, expected_signer=assignment.address)
    except (PrivacyError, StorageError, ValueError) as exc:
        report = refused_report(order_id, assignment.task, seed, committed, "manifest-signature", "untrusted manifests",
                                f"{training.bundle.name}: {exc}")
    else:
        try:
            model = model_key(net, training, verifier)
        except (PrivacyError, StorageError) as exc:
            report = refused_report(order_id, assignment.task, seed, committed, "model-key-grant",
                                    "unopenable model key grants", str(exc))
        else:
            X, y = load_split(net.store, keys["train"], upload, "train")
            report = verify_proof(
                bundle, committed_root=committed.removeprefix("0x"), challenge_seed=seed, X=X, y=y,
                fetch=lambda ref: get_decrypted(net.store, model, ref, order_id=order_id, role=PROOF_ROLE),
                config=verify_config(spec), expected_spec=train_spec(spec, upload, assignment.task),
                response=worker_response(net, training, assignment.address),
            )
    ref, doc = put_signed(net.store, verifier, report, name=f"order {order_id[:10]}/task {assignment.task}/verification report")
    net.market.submit_report(
        verifier.account, order_id=oid, task=assignment.task, kind=REPORT_VERIFICATION,
        digest=bytes.fromhex(doc.digest[2:]), signature=bytes.fromhex(doc.signature[2:]),
    )
    return Verification(
        order_id=order_id, task=assignment.task, verifier=verifier.address, report=ref, digest=doc.digest,
        passed=report.passed, checks=[c.model_dump() for c in report.checks], cost_fraction=report.cost.fraction_of_training,
    )


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


def model_key(net: Network, training: Training, validator: Identity) -> bytes:
    """The worker's model key of the task, from the grant it wrapped to ``validator``.

    Raises :class:`WrongKeyError` when the worker wrapped none to it: a validator that cannot read
    the proof cannot vouch for it, nor deliver the model.
    """
    ref = training.model_grants.get(validator.address)
    if ref is None:
        raise WrongKeyError(f"the model key of order {training.order_id}, task {training.task}",
                            f"the worker wrapped none to {validator.name} ({validator.address})")
    return open_stored_grant(net.store, ref, validator, order_id=training.order_id)


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
    """Prefect task: verify as the order's first validator; publish the checks as a table."""
    result, seconds = timed(verify, spec, upload, shard, assignment, training, network())
    order_book().record_stage(upload.order_id, "verify", seconds, "verified", verification=result)
    create_table_artifact(
        key=f"checks-{upload.order_id[2:14]}",
        table=[{k: c[k] for k in ("name", "metric", "threshold", "observed", "passed", "decisive", "detail")} for c in result.checks],
        description=f"Proof-of-Train checks of order {upload.order_id}, task {assignment.task}",
    )
    return result

"""dispute — contest a work verdict inside its window; resolve it by re-executing the disputed checks.

A validator of the order or the task's worker, the parties that hold the keys to re-verify the
task, re-runs the verification on the chain's challenge. If its signed counter-report contradicts
Wasp's verdict, it opens a dispute with a bond and the counter-report's digest (one dispute at a
time, each member once; one that leaves the verdict standing opens the window again for the
others). Once the block after the dispute exists, the contract draws resolvers among the staked
validators that are no party to the order, and the disputer wraps the train and model keys to each
of them and signs the case. Each resolver takes only a case its disputer signed, checks that the
keys and inputs in it are the ones the chain and the client's signed manifest fix (if not, the
disputer's evidence fails and it votes to dismiss), re-runs the same verification, signs its report
and votes: uphold when it contradicts the verdict. A majority closes the dispute on chain; who pays
whom is the contract's rule (contracts/README.md).

Every party acts from its own host, knowing only the order id and the task: the disputer reads the
task's inputs from the case Wasp signed with its verdict (:func:`disputed_task`), names its
counter-report in its own folder of the store by the counter-report's digest on chain
(:func:`counter_pointer`), and records on chain the SHA-256 of the case it hands over, stored first
under a name that holds it (:func:`handed_pointer`); a drawn resolver finds the case from the chain
alone (:func:`handed_case`) and takes no other, when its disputer sends it a run or its own scheduled
run looks (:func:`pending_votes`). ``bahen dispute`` is the command around these stages.
"""

import time

from contracts.errors import ChallengeNotReady, ContractRevert
from contracts.models import DisputeView, TaskView
from prefect import task
from prefect.cache_policies import NO_CACHE
from privacy.errors import PrivacyError
from privacy.grants import accepts_grants
from privacy.identity import Identity, PublicIdentity
from pydantic import BaseModel, Field
from storage.errors import ArtifactError, MissingArtifactError
from storage.refs import ArtifactRef

from bahen.artifacts import PROOF_ROLE, get_decrypted, get_signed, open_stored_grant, put_grant, put_signed
from bahen.audit import reconstruct
from bahen.errors import BahenError
from bahen.network import Network
from bahen.orders import OrderBook
from bahen.records import AuditCase, Shard, Training, Upload
from bahen.spec import OrderSpec
from tasks.inputs import InputMismatch, check_inputs, signed_inputs, worker_evidence
from tasks.runtime import network
from tasks.verify import REPORT_VERIFICATION, model_key, reexecute


class DisputeError(BahenError):
    """A dispute that cannot be opened or voted on, with what to do instead."""


class DisputeCase(BaseModel):
    """What a disputer hands its resolvers: the task's public inputs, its counter-report and their keys."""

    spec: OrderSpec
    upload: Upload
    training: Training
    disputer: str
    counter_report: ArtifactRef = Field(description="the disputer's signed verification report")
    counter_digest: str
    grants: dict[str, dict[str, ArtifactRef]] = Field(
        default_factory=dict, description="resolver address -> key role (train, model) -> the key wrapped to it")


class Vote(BaseModel):
    """One resolver's vote and the signed report behind it."""

    resolver: str
    uphold: bool
    reason: str
    report: ArtifactRef | None = None


def disputer_keys(upload: Upload, shard: Shard, training: Training, disputer: Identity, net: Network) -> dict[str, bytes]:
    """The train and model keys of the task as ``disputer`` holds them: a validator of the order, or the task's worker.

    Only they hold both, so only they can re-verify the task and show the resolvers its evidence.
    """
    order_id = upload.order_id
    grants = [s.grants for s in shard.validators if s.address == disputer.address]
    grants += [a.grants for a in shard.assignments if a.task == training.task and a.address == disputer.address]
    if not grants:
        raise DisputeError(f"{disputer.name} is neither a validator of order {order_id} nor the worker of its task "
                           f"{training.task}: only they hold the keys to re-verify it")
    try:
        return {"train": open_stored_grant(net.store, grants[0]["train"], disputer, order_id=order_id),
                "model": model_key(net, training, disputer)}
    except (PrivacyError, StorageError) as exc:
        raise DisputeError(f"{disputer.name} cannot open the keys of order {order_id} task {training.task}: {exc}") from None


def open_dispute(spec: OrderSpec, upload: Upload, shard: Shard, training: Training, disputer: Identity,
                 net: Network) -> DisputeCase:
    """Re-verify the task as ``disputer`` and, if its report contradicts the verdict, dispute it with the bond."""
    keys = disputer_keys(upload, shard, training, disputer, net)
    oid = bytes.fromhex(upload.order_id[2:])
    task = net.market.order(oid).tasks[training.task]
    verdict = task.verdict
    if verdict == "none":
        raise DisputeError(f"task {training.task} of order {upload.order_id} has no verdict yet: dispute it once Wasp "
                           "has recorded one")
    latest = net.market.dispute(oid, training.task)
    if latest.status == "upheld":
        raise DisputeError(f"a dispute has already overturned the verdict of task {training.task} of order "
                           f"{upload.order_id}: it is final")
    if verdict == "accepted" and disputer.address == task.worker:
        raise DisputeError(f"{disputer.name} is the worker of task {training.task} of order {upload.order_id}: a worker "
                           "disputes a rejection of its work, never its acceptance (upheld, it would take the bounty of "
                           "its own slash)")
    if net.market.report_of(oid, training.task, REPORT_VERIFICATION, disputer.address) != bytes(32):
        raise DisputeError(f"{disputer.name} is the verifier of order {upload.order_id} and attested its verification "
                           f"of task {training.task}: the chain takes no dispute of a verifier's own report (another "
                           "validator of the order or the task's worker may dispute it)")
    if latest.status in ("drawing", "voting"):
        raise DisputeError(f"task {training.task} of order {upload.order_id} is under dispute by {latest.disputer}: if "
                           "its verdict stands when that dispute closes, dispute it within the window the close opens")
    if latest.disputer == disputer.address:
        raise DisputeError(f"{disputer.name} disputed task {training.task} of order {upload.order_id} before: the chain "
                           "takes one dispute of a task from each member")
    report = reexecute(spec, upload, training, net, train_key=keys["train"], open_model_key=lambda: keys["model"])
    if report.passed == (verdict == "accepted"):
        raise DisputeError(f"your re-verification of task {training.task} agrees with its verdict ({verdict}): "
                           "there is nothing to dispute")
    ref, doc = put_signed(net.store, disputer, report,
                          name=f"order {upload.order_id[:10]}/task {training.task}/counter-report by {disputer.name}")
    net.store.put_pointer(disputer.address, counter_pointer(upload.order_id, training.task, doc.digest), ref)
    net.market.open_dispute(disputer.account, order_id=oid, task=training.task,
                            counter_digest=bytes.fromhex(doc.digest[2:]), bond=net.market.dispute_bond(oid, training.task))
    return DisputeCase(spec=spec, upload=upload, training=training, disputer=disputer.address,
                       counter_report=ref, counter_digest=doc.digest)


def hand_over(case: DisputeCase, shard: Shard, disputer: Identity, net: Network, *, poll_s: float = 2.0) -> ArtifactRef:
    """Draw the resolvers, wrap the train and model keys to each, sign and store the case with the grants,
    and record its digest on chain: what each resolver is handed (:func:`handed_case`, :func:`resolve`).

    Waits for the seed block on a chain that mines on its own, and draws again from a fresh one when it
    aged out; a case already recorded is returned as it was.
    """
    order_id, task = case.upload.order_id, case.training.task
    oid = bytes.fromhex(order_id[2:])
    if net.market.dispute(oid, task).case_recorded:
        return handed_case(order_id, task, net)
    resolvers: list[str] = []
    while not resolvers:  # empty: the seed block aged out and the draw re-anchored on the next one
        try:
            resolvers = net.market.draw_resolvers(disputer.account, order_id=oid, task=task)
        except ChallengeNotReady:
            time.sleep(poll_s)
        except ContractRevert as exc:
            dispute = net.market.dispute(oid, task)
            if exc.error != "NotDisputing" or dispute.status != "voting" or dispute.disputer != disputer.address:
                raise
            resolvers = dispute.resolvers  # anyone may draw: another party drew them first
    keys = disputer_keys(case.upload, shard, case.training, disputer, net)
    grants = {}
    for address in resolvers:
        public = PublicIdentity(name=f"resolver {address[:10]}", address=address,
                                x25519_public=net.market.member(address).x25519_public)
        if not accepts_grants(public):
            continue  # a key nothing can be wrapped to: that resolver cannot re-verify, the others decide
        grants[address] = {role: put_grant(net.store, key, public, order_id=order_id, role=f"task {task} {role} (dispute)")
                           for role, key in keys.items()}
    ref, _ = put_signed(net.store, disputer, case.model_copy(update={"grants": grants}),
                        name=f"order {order_id[:10]}/task {task}/dispute case by {disputer.name}")
    # Named in the store before its digest is public, so nobody can take the name first.
    net.store.put_pointer(disputer.address, handed_pointer(order_id, task, ref.sha256), ref)
    try:
        net.market.hand_over(disputer.account, order_id=oid, task=task, case_digest=bytes.fromhex(ref.sha256))
    except ContractRevert as exc:
        hand_by = net.market.hand_by(net.market.dispute(oid, task))
        if exc.error not in ("HandOverClosed", "RevertedWhenMined") or net.chain.now() <= hand_by:
            raise
        raise DisputeError(f"{disputer.name} handed over its case of order {order_id} task {task} after chain time "
                           f"{hand_by}, half the resolution period after the draw: the chain no longer records it, and "
                           "the resolvers vote the dispute down") from None
    return ref


def counter_pointer(order_id: str, task: int, counter_digest: str) -> str:
    """The store's name, in the disputer's folder, for its signed counter-report whose digest the chain records
    with the dispute. Written before the dispute opens, so a disputer whose process stopped there goes on
    (:func:`open_case`)."""
    return f"orders/{order_id.lower()}/task-{task}/counter-{counter_digest.removeprefix('0x').lower()}"


def handed_pointer(order_id: str, task: int, case_digest: str) -> str:
    """The store's name, in the disputer's folder, for the signed case whose SHA-256 the chain records at the
    hand-over: a drawn resolver finds it from the chain alone (:func:`handed_case`), and nobody can write the
    name before the disputer does, since it is not known before the case exists."""
    return f"orders/{order_id.lower()}/task-{task}/dispute-case-{case_digest.removeprefix('0x').lower()}"


def disputed_task(order_id: str, task: int, net: Network) -> tuple[OrderSpec, AuditCase]:
    """The order spec its client signed and the case Wasp signed with the task's verdict, read from the chain
    and the store (``bahen.audit.reconstruct``): what a party that never saw the order's runs disputes."""
    order_id = OrderBook.check_id(order_id)
    if _task_view(order_id, task, net).verdict == "none":
        raise DisputeError(f"task {task} of order {order_id} has no verdict yet: dispute it once Wasp has recorded one")
    [judged] = [case for case in reconstruct(order_id, net.store, net.market) if case.training.task == task]
    spec, _, _ = signed_inputs(judged.upload, task, net)
    return spec, judged


def _task_view(order_id: str, task: int, net: Network) -> TaskView:
    """Task ``task`` of the order as the chain holds it; an order the market does not hold is named as such."""
    tasks = net.market.order(bytes.fromhex(order_id[2:])).tasks
    if not 0 <= task < len(tasks):
        raise DisputeError(f"order {order_id} has {len(tasks)} task(s), numbered from 0: it has no task {task}")
    return tasks[task]


def open_case(spec: OrderSpec, upload: Upload, training: Training, disputer: Identity, net: Network) -> DisputeCase | None:
    """The dispute ``disputer`` has open on the task, rebuilt from the chain and its counter-report's name in
    the store, for a disputer whose process stopped before it handed the case over; None when it has none open."""
    oid = bytes.fromhex(upload.order_id[2:])
    latest = net.market.dispute(oid, training.task)
    if latest.disputer != disputer.address or latest.status not in ("drawing", "voting"):
        return None
    try:
        ref = net.store.get_pointer(disputer.address, counter_pointer(upload.order_id, training.task,
                                                                      latest.counter_digest))
    except MissingArtifactError:
        raise DisputeError(f"{disputer.name}'s open dispute of order {upload.order_id} task {training.task} names a "
                           f"counter-report ({latest.counter_digest}) it never stored: it has no case to hand over. The "
                           "resolvers will vote it down, or it expires and the verdict stands") from None
    return DisputeCase(spec=spec, upload=upload, training=training, disputer=disputer.address, counter_report=ref,
                       counter_digest=latest.counter_digest)


def dispute(order_id: str, task: int, disputer: Identity, net: Network, *,
            poll_s: float = 2.0) -> tuple[DisputeCase, ArtifactRef]:
    """Dispute task ``task`` of ``order_id`` as ``disputer`` from the chain and the store alone: re-verify it,
    open the dispute with the bond and hand the case over; or, where ``disputer`` has one open already,
    hand that one over. Returns the case and where it is stored."""
    spec, judged = disputed_task(order_id, task, net)
    case = (open_case(spec, judged.upload, judged.training, disputer, net)
            or open_dispute(spec, judged.upload, judged.shard, judged.training, disputer, net))
    return case, hand_over(case, judged.shard, disputer, net, poll_s=poll_s)


class CaseNotHanded(DisputeError):
    """The disputer of an open dispute has not recorded on chain the case it hands its resolvers (yet)."""


class EvidenceGap(DisputeError):
    """The case the disputer recorded is not in the store, or does not hold the task's own inputs, proof,
    response and keys: it counts against the disputer."""


def handed_case(order_id: str, task: int, net: Network) -> ArtifactRef:
    """The case the disputer of the task's open dispute handed its resolvers: the one whose digest it recorded
    on chain (:func:`hand_over`), found under the name that digest gives in the disputer's folder."""
    order_id = OrderBook.check_id(order_id)
    _task_view(order_id, task, net)
    latest = net.market.dispute(bytes.fromhex(order_id[2:]), task)
    if latest.status != "voting":
        raise DisputeError(f"task {task} of order {order_id} has no dispute to vote on (its latest: {latest.status})")
    if not latest.case_recorded:
        raise CaseNotHanded(f"the disputer {latest.disputer} has not handed over its case of order {order_id} task "
                            f"{task} yet: try again later.")
    try:
        ref = net.store.get_pointer(latest.disputer, handed_pointer(order_id, task, latest.case_digest))
    except ArtifactError as exc:
        raise EvidenceGap(f"the disputer {latest.disputer} recorded case {latest.case_digest} on chain and the store "
                          f"has it under no name of the disputer's: {exc}") from None
    if ref.sha256 != latest.case_digest[2:]:
        raise EvidenceGap(f"the disputer {latest.disputer}'s name for case {latest.case_digest} names another artifact "
                          f"({ref.name}, SHA-256 {ref.sha256})")
    return ref


def checked_keys(case: DisputeCase, resolver: Identity, net: Network) -> dict[str, bytes]:
    """The train and model keys the disputer wrapped to ``resolver``, once the case is shown to be the task's own.

    The proof manifest and the challenge response must be signed by the worker the chain names and
    answer the committed root; the train key must open the train split, the model key the
    checkpoints that manifest lists; the inputs must be those the chain and the client's signed
    manifest fix. Anything else would let a
    disputer make honest work fail re-execution, so it counts against the disputer.
    """
    order_id, task = case.upload.order_id, case.training.task
    try:
        order = check_inputs(case.spec, case.upload, task, net)
        bundle, _ = worker_evidence(case.training, order, task, net)
        grants = case.grants.get(resolver.address, {})
        keys = {role: open_stored_grant(net.store, grants[role], resolver, order_id=order_id)
                for role in ("train", "model") if role in grants}
        if len(keys) < 2:
            raise EvidenceGap(f"the disputer wrapped no train and model keys to {resolver.name}")
        get_decrypted(net.store, keys["train"], case.upload.train, order_id=order_id, role="train")
        if bundle.checkpoints:
            get_decrypted(net.store, keys["model"], bundle.checkpoints[0][1], order_id=order_id, role=PROOF_ROLE)
    except (InputMismatch, PrivacyError, ArtifactError, ValueError) as exc:
        raise EvidenceGap(f"the disputer's case does not hold the task's own evidence: {exc}") from None
    return keys


def resolve(order_id: str, task: int, case_ref: ArtifactRef, resolver: Identity, net: Network) -> Vote:
    """Re-verify the disputed task as a drawn resolver and vote on chain.

    The case must be the one whose digest the disputer recorded on chain (:func:`hand_over`), or the
    resolver casts no vote (:class:`DisputeError`): anyone can hand a resolver a case, and one voted
    down would decide the dispute before the disputer's own arrived. The recorded case is the
    disputer's word: one that is not signed by it for this dispute (its order, task and
    counter-report), or that the resolver cannot check (see :func:`checked_keys`), is voted down, as
    the burden of proof lies with the disputer. Otherwise the vote follows the resolver's own
    re-verification, against the claim the chain recorded when the dispute opened (never the one the
    case states). A store that does not answer casts no vote: run it again.
    """
    oid = bytes.fromhex(OrderBook.check_id(order_id)[2:])
    dispute = _awaiting(oid, task, resolver, net)
    if "0x" + case_ref.sha256 != dispute.case_digest:
        raise DisputeError(f"the case handed over for the dispute of order {order_id} task {task} ({case_ref.name}) "
                           f"is not the one its disputer {dispute.disputer} recorded on chain ({dispute.case_digest}): "
                           "no vote was cast. Vote on the recorded case (`bahen dispute resolve`)")
    try:
        case, _ = get_signed(net.store, case_ref, DisputeCase, expected_signer=dispute.disputer)
        if (case.upload.order_id, case.training.task, case.disputer, case.counter_digest) != (
                order_id, task, dispute.disputer, dispute.counter_digest):
            raise EvidenceGap(f"the recorded case is its disputer's for order {case.upload.order_id} task "
                              f"{case.training.task}, counter-report {case.counter_digest}, not this dispute's")
        keys = checked_keys(case, resolver, net)
    except (EvidenceGap, PrivacyError, ArtifactError) as gap:
        return _dismiss(oid, task, resolver, net, reason=str(gap))
    report = reexecute(case.spec, case.upload, case.training, net, train_key=keys["train"],
                       open_model_key=lambda: keys["model"])
    uphold = report.passed == dispute.claim_accepted
    ref, doc = put_signed(net.store, resolver, report,
                          name=f"order {order_id[:10]}/task {task}/dispute report by {resolver.name}")
    net.market.vote_dispute(resolver.account, order_id=oid, task=task, uphold=uphold,
                            report_digest=bytes.fromhex(doc.digest[2:]))
    said = "accepted" if report.passed else "rejected"
    claimed = "accepted" if dispute.claim_accepted else "rejected"
    return Vote(resolver=resolver.address, uphold=uphold, report=ref,
                reason=f"re-verification says {said}, the disputer claims {claimed}")


def _dismiss(oid: bytes, task: int, resolver: Identity, net: Network, *, reason: str) -> Vote:
    """Vote the dispute down for want of the disputer's evidence: no report of the resolver's stands behind it."""
    net.market.vote_dispute(resolver.account, order_id=oid, task=task, uphold=False, report_digest=bytes(32))
    return Vote(resolver=resolver.address, uphold=False, reason=reason)


def _awaiting(oid: bytes, task: int, resolver: Identity, net: Network) -> DisputeView:
    """The task's dispute, once shown to have drawn ``resolver`` and to await its vote."""
    dispute = net.market.dispute(oid, task)
    if resolver.address not in dispute.resolvers:
        raise DisputeError(f"{resolver.name} was not drawn to resolve the dispute of order 0x{oid.hex()} task {task}")
    if resolver.address in net.market.dispute_votes(oid, task):
        raise DisputeError(f"{resolver.name} has voted on the dispute of order 0x{oid.hex()} task {task} already: a "
                           "resolver votes once")
    return dispute


def cast_vote(order_id: str, task: int, resolver: Identity, net: Network) -> Vote:
    """As a resolver the chain drew: vote on the case the disputer recorded (:func:`resolve`).

    A disputer hands its case over as soon as the resolvers are drawn (:func:`dispute`), and the chain
    records it only within half the resolution period from the draw; from then on, the resolver votes
    to dismiss a dispute with none, closing it before it expires (an expired dispute with no case is
    dismissed too, without the resolvers' fees). A recorded case missing from the store is voted down
    at once: the burden of proof lies with the disputer.
    """
    oid = bytes.fromhex(OrderBook.check_id(order_id)[2:])
    try:
        return resolve(order_id, task, handed_case(order_id, task, net), resolver, net)
    except EvidenceGap as gap:
        _awaiting(oid, task, resolver, net)
        return _dismiss(oid, task, resolver, net, reason=str(gap))
    except CaseNotHanded as missing:
        hand_by = net.market.hand_by(_awaiting(oid, task, resolver, net))
        if net.chain.now() <= hand_by:
            raise CaseNotHanded(f"{missing} After chain time {hand_by}, half the resolution period after the draw, "
                                "the chain records no case and a resolver votes to dismiss the dispute") from None
        if net.market.dispute(oid, task).case_recorded:  # the clock first: a case recorded in time is seen
            return cast_vote(order_id, task, resolver, net)
    return _dismiss(oid, task, resolver, net,
                    reason=f"its disputer handed over no case by chain time {hand_by}, half the resolution period "
                           "after the draw")


def pending_votes(resolver: Identity, net: Network) -> list[Vote]:
    """Vote as ``resolver`` on every dispute that drew it and waits for its vote, leaving for a later round
    each whose case may still be recorded: what a validator's scheduled ``resolve-pending`` run does, so
    a resolver looks whether or not its disputer sends it a run."""
    votes = []
    for order_id, task in net.market.disputes_to_resolve(resolver.address):
        try:
            votes.append(cast_vote(order_id, task, resolver, net))
        except CaseNotHanded:
            continue
    return votes


@task(name="resolve", cache_policy=NO_CACHE)
def resolve_task(order_id: str, index: int, resolver: str) -> Vote:
    """Prefect task: as ``resolver``, a validator of this host the chain drew, vote on the dispute of task ``index``."""
    net = network()
    return cast_vote(order_id, index, net.party_at(resolver, role="validator"), net)


@task(name="resolve pending", cache_policy=NO_CACHE)
def resolve_pending_task(resolver: str) -> list[Vote]:
    """Prefect task: as ``resolver``, a validator of this host, vote on every dispute that waits for its vote."""
    net = network()
    return pending_votes(net.party_at(resolver, role="validator"), net)

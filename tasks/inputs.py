"""What a party checks of what it is handed before it acts: the order's inputs, and the worker's evidence.

Every stage of another party takes the order's spec and upload as its run's parameters, from the
client's order flow or from anyone who can create a run on the shared Prefect server; a dispute's
case and an auditor's record carry them too. Only the chain and the client's signed dataset manifest
fix them: the spec must hash to the order's spec hash on chain, and every field of the upload (the
splits, their sizes, shape and class count, the starting weights, the client and its keys, the
grants) must be what the manifest names and the chain records. A worker that trained anything
else would commit a proof that fails re-execution of the order's own inputs and be slashed for
honest work; a validator that verified or scored anything else would sign a report about another
training.

The same holds for the worker's evidence a validator or Wasp is handed: the proof manifest, the
challenge response and the model key's grant. Only what the worker the chain names signed for the
order and task is its evidence, and judged; anything else is the hander's, and refused with nothing
attested or recorded. A worker that withholds its own evidence therefore earns nothing (no report,
no verdict: its payment returns to the client at settlement) but is not slashed, and no hander can
get an honest worker's proof rejected.

Only a missing or tampered artifact counts as a mismatch; a store that does not answer raises its
own error (``StoreUnavailableError``), so an outage is never taken for evidence, by a resolver
least of all (one that votes on it decides a dispute).
"""

import re
from collections.abc import Callable

from contracts.errors import ChainError
from contracts.models import OrderView
from privacy.errors import PrivacyError
from privacy.grants import KeyGrant, accepts_grants
from privacy.identity import PublicIdentity
from privacy.signing import digest
from privacy.stream import key_id, read_header
from proof.bundle import ProofBundle
from proof.response import Response
from storage.errors import ArtifactError
from storage.manifest import Manifest
from storage.refs import ArtifactRef

from bahen.artifacts import WEIGHTS_ROLE, get_grant, get_signed
from bahen.errors import BahenError
from bahen.network import Network
from bahen.orders import order_id_for
from bahen.records import LABEL_PATTERN, Shard, Training, Upload
from bahen.spec import OrderSpec


class InputMismatch(BahenError):
    """What a party was handed is not what the chain, the client's signed manifest or the worker's signature fix."""


def check_inputs(spec: OrderSpec, upload: Upload, task: int, net: Network) -> OrderView:
    """The order as the chain holds it, once ``spec`` and ``upload`` are shown to be the ones it fixes and it has ``task``.

    Reads the chain and the signed manifest only: nothing is decrypted, trained or stored before it passes.
    """
    order = chain_order(upload, task, net)
    if order.spec_hash != "0x" + digest(spec).hex():
        raise InputMismatch(f"the order spec handed over does not hash to order {upload.order_id}'s spec hash "
                            f"{order.spec_hash} on chain")
    _check_upload(upload, _client_manifest(upload, order, net), order)
    return order


def signed_inputs(upload: Upload, task: int, net: Network) -> tuple[OrderSpec, Manifest, OrderView]:
    """What a party handed no spec (Wasp, a delivering validator, an auditor) acts on: the order spec the
    client signed into its dataset manifest, the manifest and the order as the chain holds it, once
    the spec is shown to hash to the order's spec hash on chain and ``upload`` to be the order's
    (as :func:`check_inputs`). Reads the order and the manifest once."""
    order = chain_order(upload, task, net)
    manifest = _client_manifest(upload, order, net)
    try:
        spec = OrderSpec.model_validate(manifest.meta["spec"])
    except (ValueError, KeyError) as exc:
        raise InputMismatch(f"the dataset manifest of order {upload.order_id} holds no order spec its client signed "
                            f"({type(exc).__name__}: {exc})") from None
    if order.spec_hash != "0x" + digest(spec).hex():
        raise InputMismatch(f"the order spec in the dataset manifest of order {upload.order_id} does not hash to "
                            f"its spec hash {order.spec_hash} on chain")
    _check_upload(upload, manifest, order)
    return spec, manifest, order


def chain_order(upload: Upload, task: int, net: Network) -> OrderView:
    """The order ``upload`` names, as the chain holds it, once shown to have ``task``: one read of the chain,
    for a stage that must ask the chain about the task before it checks the rest (:func:`check_inputs`)."""
    try:
        order_id = bytes.fromhex(upload.order_id.removeprefix("0x"))
    except ValueError:
        raise InputMismatch(f"the upload handed over names {upload.order_id!r}, which is no order id: nothing was "
                            "judged") from None
    order = net.market.order(order_id)
    if not 0 <= task < len(order.tasks):
        raise InputMismatch(f"order {upload.order_id} has no task {task}")
    return order


def _check_upload(upload: Upload, manifest: Manifest, order: OrderView) -> None:
    """Refuse an upload that differs from what the client's signed ``manifest`` and the chain fix."""
    fixed = _fixed_upload(manifest, upload.manifest, order)
    fixed["auditor_grants"] = _by_address(fixed["auditor_grants"])
    handed = {k: getattr(upload, k) for k in fixed} | {"auditor_grants": _by_address(upload.auditor_grants)}
    if len(handed["auditor_grants"]) != len(upload.auditor_grants):  # an auditor filed twice, in two letter cases
        handed["auditor_grants"] = None
    wrong = sorted(k for k in fixed if handed[k] != fixed[k])
    try:
        salted = order_id_for(order.client, upload.salt)
    except (ValueError, ChainError):  # not hex, or not 32 bytes
        salted = None
    if salted != order.order_id:
        wrong.append("salt")
    if "client_x25519" not in wrong and not _deliverable_to(upload):
        wrong.append("client_x25519 (a key to which nothing can be wrapped, so its model could never be delivered)")
    if wrong:
        raise InputMismatch(f"the upload of order {upload.order_id} differs from its client-signed manifest and the "
                            f"chain in {', '.join(wrong)}")


def _deliverable_to(upload: Upload) -> bool:
    """Whether the client's X25519 key, where the model key is delivered, is one a key can be wrapped to."""
    try:
        client = PublicIdentity(name="the client", address=upload.client, x25519_public=upload.client_x25519)
    except ValueError:
        return False
    return accepts_grants(client)


def _fixed_upload(manifest: Manifest, ref: ArtifactRef, order: OrderView) -> dict:
    """Every field of the order's :class:`Upload` but its salt, as the client's signed dataset manifest
    (at ``ref``) and the chain fix it."""
    entries, meta = {e.role: e.ref for e in manifest.entries}, manifest.meta
    grants = {role.split("/")[1]: r for role, r in entries.items() if role.startswith("grant/") and role.endswith("/client")}
    auditors = {role.split("/")[2]: r for role, r in entries.items()
                if role.startswith("grant/train/") and not role.endswith("/client")}
    return {
        "order_id": manifest.order_id, "spec_hash": order.spec_hash, "client": order.client, "rows": meta.get("rows"),
        "train_rows": meta.get("train_rows"), "holdout_rows": meta.get("holdout_rows"),
        "input_shape": meta.get("input_shape"), "num_classes": meta.get("num_classes"),
        "expectations": meta.get("expectations_evaluated"), "train": entries.get("train"),
        "holdout": entries.get("holdout"), "weights": entries.get(WEIGHTS_ROLE),
        "initial_weights": meta.get("initial_weights"), "client_grants": grants, "auditor_grants": auditors,
        "client_x25519": meta.get("client_x25519"), "manifest": ref,
    }


def _by_address(grants: dict[str, ArtifactRef]) -> dict[str, ArtifactRef]:
    """Grants keyed by address in any letter case, in one form to compare."""
    return {address.lower(): ref for address, ref in grants.items()}


def _client_manifest(upload: Upload, order: OrderView, net: Network) -> Manifest:
    """The upload's dataset manifest, signed by the client the chain names for the order."""
    try:
        manifest, _ = get_signed(net.store, upload.manifest, Manifest, expected_signer=order.client)
    except (PrivacyError, ArtifactError, ValueError) as exc:
        raise InputMismatch(f"the dataset manifest of order {upload.order_id} is not its client's: {exc}") from None
    return manifest


def worker_evidence(training: Training, order: OrderView, task: int, net: Network) -> tuple[ProofBundle, Response]:
    """The proof manifest and challenge response handed over in ``training`` for ``task`` of ``order``, once
    shown to be the ones its worker committed: both signed by the worker the chain names, for this
    order and task and the root committed on chain, and the final model handed over the manifest's last.

    A worker may sign more than one manifest for a task (a run that died before committing, a second
    run a stranger started beside its own): only the committed one is its proof.
    """
    order_id, view = order.order_id, order.tasks[task]
    if view.commit_block == 0:
        raise InputMismatch(f"task {task} of order {order_id} has no proof committed on chain: nothing to judge yet")
    root = view.root.removeprefix("0x")
    signed = {}
    for what, ref, model in (("proof manifest", training.bundle, ProofBundle),
                             ("challenge response", training.response, Response)):
        try:
            if ref is None:
                raise ValueError("none was handed over")
            document, _ = get_signed(net.store, ref, model, expected_signer=view.worker)
        except (PrivacyError, ArtifactError, ValueError) as exc:
            raise InputMismatch(f"the {what} handed over for order {order_id} task {task} is not one its worker "
                                f"{view.worker} signed ({exc}): nothing was judged. Hand over the worker's train "
                                "result") from None
        if (document.order_id, document.task, document.merkle_root) != (order_id, task, root):
            raise InputMismatch(f"the {what} handed over for order {order_id} task {task} is its worker's for order "
                                f"{document.order_id} task {document.task} root {document.merkle_root}, not the "
                                f"root {root} committed on chain: nothing was judged")
        signed[what] = document
    bundle = signed["proof manifest"]
    if bundle.checkpoints and training.final_model != bundle.checkpoints[-1][1]:
        raise InputMismatch(f"the final model handed over for order {order_id} task {task} is not the last checkpoint "
                            "of its worker's committed proof: nothing was judged")
    return bundle, signed["challenge response"]


def check_validators(shard: Shard, order: OrderView) -> None:
    """Refuse a shard whose validator slots are not exactly the order's validators on chain, in the chain's slot
    order, each under a name of its own: the order decides who verifies and who delivers, and the names
    label the scores."""
    if [s.address for s in shard.validators] != [v.validator for v in order.validators] or \
            len({s.name for s in shard.validators}) != len(shard.validators) or \
            not all(re.fullmatch(LABEL_PATTERN, s.name) for s in shard.validators):
        raise InputMismatch(f"the validators handed over for order {order.order_id} are not the ones the chain names, "
                            "in its slot order and each under a name of its own (letters, digits, '.', '_', '-'): "
                            "nothing was judged")


def check_case_grants(upload: Upload, shard: Shard, training: Training, bundle: ProofBundle, order: OrderView,
                      net: Network) -> None:
    """Refuse a case that holds an assignment or a grant its judge would record without knowing it to be
    the order's. Every assignment must be of a task of the order, to the worker the chain names, once,
    under a plain label. Every grant of the shard and of the training must be stored whole and wrap, for
    this order, a key to the party it is filed under, at the X25519 key that party published (a
    member's on chain, the client's in its signed manifest): a split's key under the id of the client's
    own grant of that split, the model's under the id of the key the worker's proof (``bundle``) is
    sealed under, and to the order's validators and its worker only. Whether a wrapped key opens, only
    its recipient can tell; everything an auditor re-checks of the case holds (:func:`bahen.audit.recheck`).
    """
    order_id = order.order_id
    tasks = [a.task for a in shard.assignments]
    if len(set(tasks)) != len(tasks) or any(
            not 0 <= a.task < len(order.tasks) or a.address.lower() != order.tasks[a.task].worker.lower()
            or not re.fullmatch(LABEL_PATTERN, a.worker) for a in shard.assignments):
        raise InputMismatch(f"the assignments handed over for order {order_id} are not the tasks and workers the "
                            "chain names, each once and under a plain label: nothing was judged")
    published: dict[str, str] = {upload.client.lower(): upload.client_x25519}

    def grant(ref: ArtifactRef, recipient: str, what: str) -> KeyGrant:
        if recipient.lower() not in published:
            published[recipient.lower()] = net.market.member(recipient).x25519_public
        return _grant(net, ref, order_id, recipient, published[recipient.lower()], what)

    split_keys = {role: grant(ref, upload.client, f"the client's {role} grant").key_id
                  for role, ref in upload.client_grants.items()}
    members = {v.validator.lower() for v in order.validators} | {order.tasks[training.task].worker.lower()}
    if not {address.lower() for address in training.model_grants} <= members:
        raise InputMismatch(f"the training handed over for order {order_id} task {training.task} holds model grants to "
                            "others than the order's validators and its worker: nothing was judged")
    model_keys = {grant(ref, to, "the model grant").key_id for to, ref in training.model_grants.items()}
    sealed = sealed_under(bundle, net)
    if len(model_keys) > 1 or (sealed is not None and model_keys - {sealed}):
        raise InputMismatch(f"the model grants handed over for order {order_id} task {training.task} wrap "
                            f"{'different keys' if len(model_keys) > 1 else 'another key'}, not the one its worker's "
                            "proof is sealed under: nothing was judged")
    filed = [(a.address, role, ref) for a in shard.assignments for role, ref in a.grants.items()]
    filed += [(v.address, role, ref) for v in shard.validators for role, ref in v.grants.items()]
    for address, role, ref in filed:
        if role not in split_keys or grant(ref, address, f"the {role} grant").key_id != split_keys[role]:
            raise InputMismatch(f"the {role} grant handed over for {address} in order {order_id} wraps another key "
                                "than the client's own grant of that split: nothing was judged")


def _grant(net: Network, ref: ArtifactRef, order_id: str, recipient: str, x25519: str, what: str) -> KeyGrant:
    """The grant at ``ref``, once shown to be stored whole and addressed, for ``order_id``, to ``recipient``
    at its X25519 key ``x25519``."""
    try:
        grant = get_grant(net.store, ref)
    except (PrivacyError, ArtifactError, ValueError) as exc:
        raise InputMismatch(f"{what} handed over for {recipient} in order {order_id} cannot be read ({exc}): "
                            "nothing was judged") from None
    if grant.order_id != order_id or grant.recipient.lower() != recipient.lower() or \
            grant.recipient_x25519.removeprefix("0x").lower() != x25519.removeprefix("0x").lower():
        raise InputMismatch(f"{what} handed over for {recipient} in order {order_id} is a {grant.name()} at X25519 "
                            f"key {grant.recipient_x25519[:16]}…, not that party's for this order: nothing was judged")
    return grant


def sealed_under(bundle: ProofBundle, net: Network) -> str | None:
    """The id of the key the worker sealed its proof under, from its step log's public header; None when
    the step log is withheld or broken (the worker's own, which the checks find)."""
    try:
        return read_header(net.store.get(bundle.step_log)).key_id
    except (PrivacyError, ArtifactError):
        return None


def proof_key(open_model_key: Callable[[], bytes], bundle: ProofBundle, order_id: str, task: int, net: Network) -> bytes:
    """The model key handed over, once shown to be the one the worker sealed its proof under: a grant
    that does not open, or opens another key, is the hander's (:class:`InputMismatch`, nothing judged).
    A step log that is missing or broken is the worker's own, and left to the checks."""
    try:
        model = open_model_key()
    except (PrivacyError, ArtifactError) as exc:
        raise InputMismatch(f"the model key of order {order_id} task {task} handed over does not open ({exc}): "
                            "nothing was judged. Hand over the worker's train result, whose grants the worker wrapped") from None
    if (sealed := sealed_under(bundle, net)) is None:
        return model  # the worker's own step log, withheld or broken: the checks find it
    if sealed != key_id(model):
        raise InputMismatch(f"the model key of order {order_id} task {task} handed over ({key_id(model)}) is not the one "
                            f"its proof is sealed under ({sealed}): nothing was judged")
    return model

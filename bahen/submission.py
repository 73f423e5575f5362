"""The client's signature on the order runs it submits to a shared Prefect server.

Every party of the network can create runs on its Prefect server, in any work queue: a run in a
client's own queue says nothing about who made it. The order run therefore carries the client's
signature of what it orders, and the client's host opens and pays for nothing else. The signature
covers the spec and the salt (which fixes the order's id), so a changed field is refused, and a copy
of a signed run in a new run is the same order, which the first run holds (``OrderBook.claim``). A run without one, as the
Prefect UI's form makes, is taken only where the client's operator allows it, and then only on the
sample datasets: a file named by a stranger would be uploaded for the workers and auditors the
stranger's order names.
"""

from typing import Annotated

from pydantic import Field

from privacy.identity import Identity
from privacy.signing import SignatureError, digest, recover_signer, sign_digest

from bahen.errors import BahenError
from bahen.spec import OrderSpec

KIND = "bahen.order-submission.v1"

Signature = Annotated[str, Field(
    pattern=r"^(0x[0-9a-f]{130})?$",
    description="The client's signature of the spec and salt, which `bahen order submit` and the SDK add. Leave "
    "it empty in the UI: the client's host takes an unsigned run only if its operator allows it "
    "(accept_unsigned_orders), and only on a sample dataset")]


class ForgedOrderRun(BahenError):
    """An order run whose signature is not its client's over the spec and salt it carries."""


class UnsignedOrderRun(BahenError):
    """An order run without the client's signature that the client's host does not take."""


def submission_digest(spec: OrderSpec, salt: str, client: str) -> bytes:
    """What the client signs: keccak256 of the canonical JSON of the spec, the salt and its address."""
    return digest({"kind": KIND, "client": client.lower(), "salt": salt, "spec": spec.model_dump(mode="json")})


def sign_submission(identity: Identity, spec: OrderSpec, salt: str) -> str:
    """The signature, 0x and 130 hex digits, that lets ``identity``'s host run ``spec`` under ``salt``."""
    return "0x" + sign_digest(identity, submission_digest(spec, salt, identity.address)).hex()


def check_submission(spec: OrderSpec, salt: str, signature: str, client: str, *, accept_unsigned: bool) -> None:
    """Refuse, before anything is stored or paid, an order run that ``client`` did not sign.

    A signed run must carry the signature of ``client`` over exactly this spec and salt
    (:class:`ForgedOrderRun`). An unsigned run is refused unless ``accept_unsigned``, and even then if
    it names a file on the client's host (:class:`UnsignedOrderRun`).
    """
    if signature:
        try:
            signer = recover_signer(submission_digest(spec, salt, client), bytes.fromhex(signature.removeprefix("0x")))
        except (SignatureError, ValueError) as error:
            raise ForgedOrderRun(f"this order run's signature is not valid ({error}): nothing was opened or "
                                 "paid") from None
        if signer.lower() != client.lower():
            raise ForgedOrderRun(
                f"this order run's signature is not client {client}'s over the spec and salt it carries (it recovers "
                f"to {signer}): either someone else made the run or its fields were changed after signing. Nothing "
                "was opened or paid; submit the order again with `bahen order submit` or the SDK")
        return
    if not accept_unsigned:
        raise UnsignedOrderRun(
            f"this order run carries no signature of client {client}, as a run from the Prefect UI's form or from "
            "anyone else who can reach the Prefect server: nothing was opened or paid. Submit it with `bahen order "
            "submit` or the SDK, which sign it; to take unsigned runs from the UI, set accept_unsigned_orders: true "
            "in the client's config.yaml (anyone who can create runs on the server can then spend this client's "
            "money on sample datasets)")
    files = [f"{name} {value!r}" for name in ("dataset_path", "initial_weights_path")
             if (value := getattr(spec, name)) is not None]
    if files:
        raise UnsignedOrderRun(
            f"an unsigned order run may train only on a sample dataset, and this one names {' and '.join(files)} on "
            "the client's host, which a stranger could have named to have it uploaded for the workers and auditors "
            "the order names: nothing was opened or paid. Submit an order on your own files with `bahen order "
            "submit` or the SDK, which sign it")

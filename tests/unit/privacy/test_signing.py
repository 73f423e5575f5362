"""Canonical JSON, keccak digests and EIP-191 signatures over them."""

import datetime as dt
import json
import math
import re

import pytest
from eth_keys import keys
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from privacy.errors import CanonicalJsonError, SignatureError
from privacy.identity import Identity
from privacy.signing import (
    SignedDocument,
    canonical_json,
    digest,
    recover_signer,
    sign_digest,
    sign_document,
    verify_document,
)

# The well-known example key of the eth-account documentation.
PRIVATE_KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
SIGNER = Identity.from_secrets("wasp", PRIVATE_KEY, bytes(32))
OTHER = Identity.generate("worker")
PAYLOAD = {"order_id": "0x01", "merkle_root": "0x" + "11" * 32, "steps": 40, "loss": 0.25}
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


class Report(BaseModel):
    order_id: str
    score: float
    passed: bool


def test_canonical_json_known_answers():
    assert canonical_json(PAYLOAD) == (
        b'{"loss":0.25,"merkle_root":"0x1111111111111111111111111111111111111111111111111111111111111111",'
        b'"order_id":"0x01","steps":40}'
    )
    assert canonical_json({"b": [1, 2.0, None, True, (3, "x")], "a": "é\n\"\\\x01"}) == (
        '{"a":"é\\n\\"\\\\\\u0001","b":[1,2.0,null,true,[3,"x"]]}'.encode()
    )
    assert canonical_json({"z": {"b": 1, "a": 2}, "big": 2**80, "small": 1e-7}) == (
        b'{"big":1208925819614629174706176,"small":1e-07,"z":{"a":2,"b":1}}'
    )


def test_pydantic_models_are_their_json_dump():
    report = Report(order_id="0x01", score=0.5, passed=True)
    assert canonical_json(report) == b'{"order_id":"0x01","passed":true,"score":0.5}'
    assert canonical_json({"report": report}) == b'{"report":{"order_id":"0x01","passed":true,"score":0.5}}'


@pytest.mark.parametrize("value, message", [
    (b"raw", "a bytes has no canonical JSON form; convert it (bytes as hex)"),
    ({1: "int key"}, "canonical JSON object keys are strings; convert the keys first"),
    (math.nan, "nan has no JSON form; record it as a string or null"),
    ({"x": math.inf}, "inf has no JSON form; record it as a string or null"),
    (object(), "a object has no canonical JSON form"),
    ("\ud800", "a string is not valid Unicode"),
])
def test_values_without_a_canonical_form_are_refused_and_named(value, message):
    with pytest.raises(CanonicalJsonError, match=re.escape(message)) as refused:
        canonical_json(value)
    assert str(refused.value).startswith(message)


def test_a_models_fields_are_written_in_json_mode():
    class Stamped(BaseModel):
        at: dt.datetime
        steps: tuple[int, int]

    stamped = Stamped(at=dt.datetime(2026, 12, 4, 7, 0, tzinfo=dt.UTC), steps=(1, 2))
    assert canonical_json(stamped) == b'{"at":"2026-12-04T07:00:00Z","steps":[1,2]}'


def test_digest_is_keccak_of_canonical_json():
    assert keccak(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert digest(PAYLOAD).hex() == "8c56568443433f861c353378129976ebc690308f37678414bf7684f9c16efabb"


@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_canonical_json_is_stable_through_parsing_and_key_order(value):
    encoded = canonical_json(value)
    assert canonical_json(json.loads(encoded)) == encoded
    if isinstance(value, dict):
        assert canonical_json(dict(reversed(list(value.items())))) == encoded


def test_signature_is_eip191_over_the_digest_known_answer():
    payload_digest = digest(PAYLOAD)
    signature = sign_digest(SIGNER, payload_digest)
    assert SIGNER.address == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    assert signature.hex() == (
        "37f78567ea0ce7cf12f8f2b2ca0daf53812f6f5be5584425f219d0bd66514a9c"
        "77a391be90815a895d0fca332c275d15acafe34f13cff37785b14bc741a44be61c"
    )
    # What ECDSA.recover(MessageHashUtils.toEthSignedMessageHash(digest), sig) checks on chain.
    eth_signed = keccak(b"\x19Ethereum Signed Message:\n32" + payload_digest)
    raw = keys.PrivateKey(PRIVATE_KEY).sign_msg_hash(eth_signed).to_bytes()
    assert signature == raw[:64] + bytes([raw[64] + 27])
    assert recover_signer(payload_digest, signature) == SIGNER.address


def test_signed_document_round_trips_through_json():
    doc = SignedDocument.model_validate_json(sign_document(SIGNER, PAYLOAD).model_dump_json())
    assert verify_document(doc, expected_signer=SIGNER.address.lower()) == SIGNER.address
    assert doc.digest == "0x" + digest(PAYLOAD).hex()


def test_pydantic_payload_is_signed_as_its_dump():
    doc = sign_document(SIGNER, Report(order_id="0x01", score=0.75, passed=False))
    assert doc.payload == {"order_id": "0x01", "score": 0.75, "passed": False}
    assert verify_document(doc) == SIGNER.address


@settings(max_examples=25, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_any_json_object_signs_and_verifies(payload):
    assert verify_document(sign_document(OTHER, payload), expected_signer=OTHER.address) == OTHER.address


def test_non_object_payload_is_refused():
    with pytest.raises(CanonicalJsonError, match="a signed payload is a JSON object, not list"):
        sign_document(SIGNER, [1, 2])


def test_unexpected_signer_is_refused():
    with pytest.raises(SignatureError, match="not by the expected"):
        verify_document(sign_document(SIGNER, PAYLOAD), expected_signer=OTHER.address)


def test_changed_payload_is_refused():
    doc = sign_document(SIGNER, PAYLOAD)
    with pytest.raises(SignatureError, match="payload was changed"):
        verify_document(doc.model_copy(update={"payload": {**PAYLOAD, "steps": 41}}))


def test_payload_and_digest_changed_together_are_refused():
    changed = {**PAYLOAD, "steps": 41}
    doc = sign_document(SIGNER, PAYLOAD).model_copy(update={"payload": changed, "digest": "0x" + digest(changed).hex()})
    with pytest.raises(SignatureError, match="signature is by"):
        verify_document(doc)


def test_claimed_signer_that_did_not_sign_is_refused():
    doc = sign_document(SIGNER, PAYLOAD).model_copy(update={"signer": OTHER.address})
    with pytest.raises(SignatureError):
        verify_document(doc)


def test_malleable_and_malformed_signatures_are_refused_and_named():
    payload_digest = digest(PAYLOAD)
    signature = sign_digest(SIGNER, payload_digest)
    s = int.from_bytes(signature[32:64], "big")
    twin = signature[:32] + (CURVE_ORDER - s).to_bytes(32, "big") + bytes([55 - signature[64]])
    canonical = "the signature is not in canonical form (v 27/28, low s), so the contracts would reject it; " \
                "ask the signer to sign again"
    for bad, message in [(twin, canonical), (signature[:64] + b"\x00", canonical),
                         (signature[:64], "a signature is 65 bytes (r ‖ s ‖ v), got 64"),
                         (b"\x00" * 64 + b"\x1b", "the signature is malformed")]:
        with pytest.raises(SignatureError, match=re.escape(message)):
            recover_signer(payload_digest, bad)
    with pytest.raises(SignatureError, match="a digest is 32 bytes"):
        recover_signer(b"short", signature)
    doc = sign_document(SIGNER, PAYLOAD).model_copy(update={"signature": "0xzz"})
    with pytest.raises(SignatureError, match="the document's signature is not hex"):
        verify_document(doc)
    with pytest.raises(SignatureError, match="'nobody' is not an Ethereum address"):
        verify_document(sign_document(SIGNER, PAYLOAD), expected_signer="nobody")


def test_s_at_exactly_half_the_curve_order_is_canonical():
    # OpenZeppelin refuses s above half the order, not s equal to it: the boundary is not "not canonical".
    half = (0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0).to_bytes(32, "big")
    signature = sign_digest(SIGNER, digest(PAYLOAD))
    try:
        recover_signer(digest(PAYLOAD), signature[:32] + half + bytes([27]))
    except SignatureError as refused:
        assert "not in canonical form" not in str(refused)


def test_models_opting_in_write_non_finite_floats_as_strings():
    from pydantic import ConfigDict

    class Measured(BaseModel):
        model_config = ConfigDict(ser_json_inf_nan="strings")
        observed: float

    class Plain(BaseModel):
        observed: float

    assert canonical_json(Measured(observed=math.inf)) == b'{"observed":"Infinity"}'
    assert canonical_json(Measured(observed=math.nan)) == b'{"observed":"NaN"}'
    with pytest.raises(CanonicalJsonError):
        canonical_json(Plain(observed=math.inf))


def test_a_document_of_the_wrong_form_is_named_with_its_first_problem_and_how_many_more():
    from privacy.errors import DocumentError
    from privacy.signing import parse_document

    def refusal(data) -> str:
        with pytest.raises(DocumentError) as refused:
            parse_document(SignedDocument, data, what="the manifest")
        return str(refused.value)

    assert refusal(b'{"payload": {}, "digest": 1}') == (
        "the manifest is not a valid SignedDocument (digest: Input should be a valid string, and 2 more problems); "
        "reject it or fetch it again")
    assert refusal({"payload": {"a": 1}, "digest": "0x", "signer": "0x"}) == (
        "the manifest is not a valid SignedDocument (signature: Field required); reject it or fetch it again")
    assert refusal({"payload": {}, "digest": "0x"}) == (
        "the manifest is not a valid SignedDocument (signer: Field required, and 1 more problems); "
        "reject it or fetch it again")
    assert refusal(b"[1").startswith("the manifest is not a valid SignedDocument (the document: Invalid JSON")

    class Nested(BaseModel):
        report: Report

    with pytest.raises(DocumentError, match=r"\(report\.score: Input should be a valid number"):
        parse_document(Nested, {"report": {"order_id": "0x01", "score": "high", "passed": True}}, what="the report")


def test_a_document_of_exactly_the_largest_size_is_read(monkeypatch):
    import privacy.signing
    from privacy.errors import DocumentError

    data = canonical_json(sign_document(SIGNER, PAYLOAD))
    monkeypatch.setattr(privacy.signing, "MAX_DOCUMENT_BYTES", len(data))
    assert privacy.signing.parse_document(SignedDocument, data, what="doc").payload == PAYLOAD
    with pytest.raises(DocumentError, match=f"^doc is {len(data) + 1:,} bytes, over the {len(data):,} a party reads; "
                                            "it was not written by bahen, reject it$"):
        privacy.signing.parse_document(SignedDocument, data + b" ", what="doc")

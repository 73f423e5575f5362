import hashlib
import math

import pytest

from storage.manifest import (
    ArtifactEntry,
    Manifest,
    ManifestError,
    MissingRoleError,
)
from storage.refs import ArtifactRef

REF = ArtifactRef(name="order 0x01/train", md5="a" * 32, sha256="b" * 64, size=7)


def _manifest(**meta) -> Manifest:
    return Manifest(kind="dataset", order_id="0x01",
                    entries=[ArtifactEntry(role="train", ref=REF,
                                           encryption={"alg": "AES-256-GCM", "chunk": 1048576})],
                    meta=meta)


def test_canonical_bytes_are_sorted_compact_utf8():
    assert _manifest(note="é").to_bytes() == (
        b'{"entries":[{"encryption":{"alg":"AES-256-GCM","chunk":1048576},"ref":{"is_dir":false,'
        b'"md5":"' + b"a" * 32 + b'","name":"order 0x01/train","sha256":"' + b"b" * 64
        + b'","size":7},"role":"train"}],"kind":"dataset","meta":{"note":"\xc3\xa9"},'
        b'"order_id":"0x01"}')


def test_round_trip_is_exact():
    manifest = _manifest(rows=1797, split=[0.8, 0.2])
    data = manifest.to_bytes()
    assert Manifest.from_bytes(data) == manifest
    assert Manifest.from_bytes(data).to_bytes() == data


def test_key_order_of_the_input_does_not_matter():
    a = _manifest(x=1, y=2).to_bytes()
    b = Manifest(kind="dataset", order_id="0x01", meta={"y": 2, "x": 1},
                 entries=_manifest().entries).to_bytes()
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()


def test_missing_role_is_a_key_error_naming_the_roles():
    with pytest.raises(KeyError) as info:
        _manifest().entry("holdout")
    assert isinstance(info.value, MissingRoleError)
    assert str(info.value) == "dataset manifest of order 0x01 has no 'holdout' artifact (roles: train)"
    assert _manifest().entry("train").ref == REF


def test_roles_are_unique():
    entry = ArtifactEntry(role="train", ref=REF)
    with pytest.raises(ValueError, match="repeated: train"):
        Manifest(kind="dataset", order_id="0x01", entries=[entry, entry])


def test_nan_has_no_canonical_form():
    with pytest.raises(ManifestError, match="NaN"):
        _manifest(loss=math.nan).to_bytes()


def test_garbage_is_a_manifest_error():
    with pytest.raises(ManifestError, match="not a valid manifest"):
        Manifest.from_bytes(b'{"kind": "dataset"}')



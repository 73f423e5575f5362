import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.dirs import decode_listing, encode_dvc, encode_listing
from storage.errors import IntegrityError
from storage.refs import ArtifactRef

_part = st.text(alphabet="abcxyz0189-_. é", min_size=1, max_size=8).filter(
    lambda p: p not in (".", ".."))
_relpath = st.lists(_part, min_size=1, max_size=3).map("/".join)
_ref = st.builds(lambda b: ArtifactRef(name="e", md5=hashlib.md5(b).hexdigest(),
                                       sha256=hashlib.sha256(b).hexdigest(), size=len(b)),
                 st.binary(max_size=16))


def _dir_ref(entries: dict[str, ArtifactRef]) -> ArtifactRef:
    listing = encode_listing(entries)
    return ArtifactRef(name="d", md5=hashlib.md5(encode_dvc(entries)).hexdigest(),
                       sha256=hashlib.sha256(listing).hexdigest(), size=len(listing), is_dir=True)


@given(st.dictionaries(_relpath, _ref, max_size=6))
def test_listing_round_trip(entries):
    decoded = decode_listing(encode_listing(entries), _dir_ref(entries))
    assert {k: (v.md5, v.sha256, v.size) for k, v in decoded.items()} == {
        k: (v.md5, v.sha256, v.size) for k, v in entries.items()}
    dvc = json.loads(encode_dvc(entries))
    assert [row["relpath"] for row in dvc] == sorted(entries)
    assert all(set(row) == {"md5", "relpath"} for row in dvc)


def test_a_listing_that_disagrees_with_the_dvc_address_is_refused():
    entry = ArtifactRef(name="e", md5="a" * 32, sha256="b" * 64, size=1)
    ref = _dir_ref({"x": entry})
    other = encode_listing({"y": entry})
    with pytest.raises(IntegrityError, match="d is tampered .* DVC address"):
        decode_listing(other, ref)
    with pytest.raises(IntegrityError, match="does not parse"):
        decode_listing(b"[{}]", ref)

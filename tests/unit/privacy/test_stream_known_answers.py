"""The encryption stream's refusals as known answers: each way an artifact can be wrong gives its own
error class and exact message, naming the artifact, and no plaintext of a refused artifact is yielded."""

import pytest

import privacy.stream as stream
from privacy.bytereader import ByteReader
from privacy.errors import (
    ContextMismatchError, PrivacyError, TamperedError, TruncatedError, TruncatedOrTamperedError, WrongKeyError,
)
from privacy.header import TAG_SIZE, Header, key_id, read_header
from privacy.stream import (
    EncryptionContext, decrypt_bytes, decrypt_chunks, decrypt_file, encrypt_bytes, encrypt_file, seal_stream,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CONTEXT = EncryptionContext("0xorder", "dataset")
NAME = "order 0xorder/dataset"
CHUNK = 16
SEGMENT = CHUNK + TAG_SIZE


def _sealed(data: bytes, key: bytes = KEY, context: EncryptionContext = CONTEXT) -> tuple[bytes, int]:
    """The artifact of ``data`` in 16-byte chunks, and its header's length."""
    sealed = encrypt_bytes(key, data, context=context, chunk_size=CHUNK)
    return sealed, len(read_header(sealed).to_bytes())


def _refusal(sealed: bytes, key: bytes = KEY, context: EncryptionContext = CONTEXT) -> tuple[type, str]:
    with pytest.raises(PrivacyError) as caught:
        decrypt_bytes(key, sealed, context=context, artifact=NAME)
    assert caught.value.artifact == NAME
    prefix = f"cannot decrypt {NAME}: "
    assert str(caught.value).startswith(prefix)
    return type(caught.value), str(caught.value)[len(prefix):]


def test_a_wrong_key_names_both_key_ids():
    sealed, _ = _sealed(b"x" * 40)
    assert _refusal(sealed, OTHER_KEY) == (WrongKeyError, (
        f"it was encrypted under key {key_id(KEY)}, not under the offered key {key_id(OTHER_KEY)}; use the data key "
        "granted for it"))


@pytest.mark.parametrize("key", [KEY, OTHER_KEY], ids=["the offered key", "another key"])
def test_another_orders_artifact_is_a_mismatch_before_any_plaintext(key):
    sealed, _ = _sealed(b"one chunk", key, EncryptionContext("0xother", "holdout"))
    expected = (ContextMismatchError, (
        "it belongs to order '0xother' role 'holdout', not to the expected order '0xorder' role 'dataset'; check "
        "which artifact was fetched"))
    assert _refusal(sealed) == expected
    with pytest.raises(ContextMismatchError):
        next(decrypt_chunks(KEY, [sealed], context=CONTEXT, artifact=NAME))


def test_an_artifact_refused_without_a_name_is_called_the_artifact():
    sealed, _ = _sealed(b"x")
    for data in (sealed[:-1], b"BAHENENC" + bytes([2]) + sealed[9:]):
        with pytest.raises(PrivacyError) as caught:
            decrypt_bytes(KEY, data, context=CONTEXT)
        assert caught.value.artifact == "artifact" and str(caught.value).startswith("cannot decrypt artifact: ")


def test_each_truncation_and_tampering_is_classified_and_explained():
    sealed, header = _sealed(b"y" * 40)  # chunks of 16, 16 and a final 8 bytes
    final = header + 2 * SEGMENT
    cases = {
        "inside the header": (sealed[: header - 1], TruncatedError,
                              "it ends inside its header; fetch the artifact again"),
        "inside a tag": (sealed[: header + SEGMENT + TAG_SIZE - 1], TruncatedError,
                         "it ends inside chunk 1; fetch the artifact again"),
        "after a whole chunk": (sealed[:final], TruncatedError,
                                "it ends after chunk 1, but later chunks were written; fetch the artifact again"),
        "inside the final chunk": (sealed[:-1], TruncatedOrTamperedError,
                                   "its final chunk 2 fails authentication: it was cut short or altered; fetch the "
                                   "artifact again"),
        "a middle chunk altered": (sealed[: header + 3] + b"\0" + sealed[header + 4 :], TamperedError,
                                   "chunk 0 fails authentication: bytes were altered, or chunks reordered, duplicated "
                                   "or spliced; do not use this artifact"),
    }
    for what, (data, error, reason) in cases.items():
        assert _refusal(data) == (error, reason), what


def test_a_full_size_final_chunk_altered_is_tampering_and_followed_by_bytes_is_named():
    sealed, _ = _sealed(b"z" * 32)  # the final chunk is a full one: nothing was cut
    assert _refusal(sealed + b"extra") == (TamperedError, "bytes follow its final chunk 1; the artifact was altered")
    altered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    assert _refusal(altered) == (TamperedError, (
        "chunk 1 fails authentication: bytes were altered, or chunks reordered, duplicated or spliced; do not use "
        "this artifact"))


def test_the_chunk_limit_is_reached_and_not_passed(monkeypatch):
    monkeypatch.setattr(stream, "_MAX_CHUNKS", 2)
    exact, _ = _sealed(b"a" * 32)
    assert decrypt_bytes(KEY, exact, context=CONTEXT) == b"a" * 32
    with pytest.raises(PrivacyError) as caught:
        _sealed(b"a" * 33)
    assert str(caught.value) == "a stream holds at most 2 chunks; use a larger chunk size"
    monkeypatch.setattr(stream, "_MAX_CHUNKS", 3)
    longer, _ = _sealed(b"a" * 33)
    monkeypatch.setattr(stream, "_MAX_CHUNKS", 2)
    assert _refusal(longer) == (TamperedError, "it holds more than 2 chunks, which no writer produces")


def test_a_header_under_another_key_is_refused_before_sealing():
    header = Header.new(OTHER_KEY, CONTEXT, CHUNK)
    with pytest.raises(ValueError) as caught:
        list(seal_stream(KEY, header, [b"x"]))
    assert str(caught.value) == "the header's key id does not match the key"


def test_a_file_keeps_its_chunk_size_and_its_refusals_name_the_artifact(tmp_path):
    src, sealed, out = tmp_path / "plain", tmp_path / "sealed", tmp_path / "out"
    src.write_bytes(b"q" * 100)
    encrypt_file(KEY, src, sealed, context=CONTEXT, chunk_size=24)
    assert read_header(sealed.read_bytes()).chunk_size == 24
    for artifact, named in ((NAME, NAME), (None, str(sealed))):
        with pytest.raises(WrongKeyError) as caught:
            decrypt_file(OTHER_KEY, sealed, out, context=CONTEXT, artifact=artifact)
        assert caught.value.artifact == named
    sealed.write_bytes(b"BAHEN")
    with pytest.raises(TruncatedError) as caught:
        decrypt_file(KEY, sealed, out, context=CONTEXT, artifact=NAME)
    assert str(caught.value) == f"cannot decrypt {NAME}: it ends inside its header; fetch the artifact again"
    sealed.write_bytes(b"PAR1" + bytes(5000))
    with pytest.raises(PrivacyError) as caught:
        decrypt_file(KEY, sealed, out, context=CONTEXT, artifact=NAME)
    assert caught.value.artifact == NAME and not out.exists()


def test_a_byte_reader_peeks_and_reads_exact_sizes_across_pieces():
    reader = ByteReader([b"ab", bytearray(b"cd"), b"", b"efg"])
    assert reader.peek(3) == b"abc" and reader.peek(0) == b""
    assert reader.read(1) == b"a" and reader.peek(4) == b"bcde"
    assert reader.read(2) == b"bc" and reader.read(2) == b"de"
    assert not reader.at_eof() and reader.read(5) == b"fg" and reader.at_eof() and reader.read(1) == b""


def test_a_malformed_header_met_while_decrypting_names_the_artifact():
    sealed, header = _sealed(b"x")
    cases = {b"BAHENEND" + sealed[8:]: "it is not a bahen encrypted artifact (wrong magic bytes)",
             sealed[:12] + bytes(4) + sealed[16:]: "chunk size 0 is outside 1..67108864"}
    for data, reason in cases.items():
        assert _refusal(data)[1] == reason

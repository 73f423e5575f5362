import hashlib
import os

from hypothesis import given
from hypothesis import strategies as st

from storage.digest import Digest, iter_views


def test_known_answers_for_abc():
    ref = Digest().consume(iter_views(b"abc")).ref("abc")
    assert ref.md5 == "900150983cd24fb0d6963f7d28e17f72"
    assert ref.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert ref.size == 3


def test_empty_input_has_the_empty_digests():
    ref = Digest().consume(iter_views(b"")).ref("empty")
    assert ref.md5 == "d41d8cd98f00b204e9800998ecf8427e"
    assert ref.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert ref.size == 0


def test_large_chunks_hashed_in_two_threads_match_hashlib():
    data = os.urandom(9 << 20)  # above the threshold, several 4 MiB views
    written = bytearray()
    ref = Digest().consume(iter_views(data), written.extend).ref("big")
    assert ref.md5 == hashlib.md5(data).hexdigest()
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert bytes(written) == data


def test_md5_lagging_over_many_immutable_chunks_matches_hashlib():
    data = os.urandom(20 << 20)  # 20 views of 1 MiB: more than MAX_LAG in flight at once
    ref = Digest().consume(iter_views(data, chunk_size=1 << 20)).ref("lagging")
    assert ref.md5 == hashlib.md5(data).hexdigest()
    assert ref.sha256 == hashlib.sha256(data).hexdigest()


def test_a_producer_may_refill_its_buffer_once_the_next_chunk_is_pulled():
    buffer, seen = bytearray(8 << 20), []

    def refilled():  # a refill is a fast memset, md5 of the chunk before it a slow 10 ms
        for i in range(4):
            buffer[:] = bytes([i]) * len(buffer)
            seen.append(bytes(buffer))
            yield buffer

    ref = Digest().consume(iter_views(refilled())).ref("reused")
    assert ref.md5 == hashlib.md5(b"".join(seen)).hexdigest()
    assert ref.sha256 == hashlib.sha256(b"".join(seen)).hexdigest()


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_chunking_does_not_change_the_digest(chunks):
    joined = b"".join(chunks)
    whole = Digest().consume(iter_views(joined, chunk_size=7)).ref("x")
    streamed = Digest().consume(iter_views(iter(chunks))).ref("x")
    assert whole == streamed
    assert whole.sha256 == hashlib.sha256(joined).hexdigest()


def test_non_bytes_chunks_are_refused():
    try:
        Digest().consume(iter_views(["text"]))
    except TypeError as exc:
        assert "bytes" in str(exc)
    else:
        raise AssertionError("a str chunk was accepted")

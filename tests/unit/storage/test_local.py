import hashlib
import json
import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.digest import CHUNK_SIZE
from storage.errors import IntegrityError, MissingArtifactError, StorageError, StoreUnavailableError
from storage.local import LocalStore
from storage.refs import ArtifactRef
from storage.store import ArtifactStore, dvc_key, object_key, open_store, party_folder, pointer_key


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(str(tmp_path / "remote"))


def test_objects_sit_at_dvc_addresses(store):
    ref = store.put(b"hello", name="greeting")
    path = store.root / "files/md5/5d/41402abc4b2a76b9719d911017c592"
    assert path.read_bytes() == b"hello"
    assert ref.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert store.get(ref) == b"hello"


def test_open_store_picks_the_local_backend_for_paths_and_file_urls(tmp_path):
    assert isinstance(open_store(str(tmp_path / "a")), LocalStore)
    store = open_store(f"file://{tmp_path}/b")
    assert isinstance(store, ArtifactStore) and store.url == str(tmp_path / "b")


def test_chunks_and_bytes_give_the_same_object(store):
    data = os.urandom(5 << 20)
    ref = store.put(data, name="a")
    again = store.put(iter([data[:1000], data[1000:]]), name="b")
    assert (again.md5, again.sha256, again.size) == (ref.md5, ref.sha256, ref.size)
    assert b"".join(store.iter_chunks(again, chunk_size=1 << 20)) == data


def test_putting_existing_content_changes_nothing(store):
    ref = store.put(b"once", name="x")
    path = store.root / object_key(ref)
    before = path.stat()
    store.put(b"once", name="x again")
    after = path.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_objects_are_read_only_and_no_temp_files_remain(store):
    ref = store.put(b"payload", name="x")
    mode = (store.root / object_key(ref)).stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert [p.name for p in store.root.iterdir()] == ["files"]


def test_a_failing_stream_leaves_no_object_and_no_temp_file(store):
    def chunks():
        yield b"partial"
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        store.put(chunks(), name="x")
    assert list(store.root.rglob("*")) == []


def _tamper(store: LocalStore, ref: ArtifactRef, data: bytes) -> None:
    path = store.root / object_key(ref)
    path.chmod(0o644)
    path.write_bytes(data)


def test_replaced_bytes_fail_naming_the_artifact(store):
    ref = store.put(b"honest bytes", name="order 0xab/checkpoint step 40")
    _tamper(store, ref, b"forged bytes")
    with pytest.raises(IntegrityError, match="order 0xab/checkpoint step 40 is tampered") as info:
        store.get(ref)
    assert info.value.artifact == "order 0xab/checkpoint step 40"
    assert "sha256" in str(info.value)


@pytest.mark.parametrize("stored", [b"honest", b"honest bytes and more"])
def test_truncated_or_extended_objects_fail_on_size(store, stored):
    ref = store.put(b"honest bytes", name="log")
    _tamper(store, ref, stored)
    with pytest.raises(IntegrityError, match="log is tampered or truncated"):
        store.get(ref)


def test_putting_over_a_replaced_object_of_another_size_is_refused(store):
    ref = store.put(b"honest bytes", name="log")
    _tamper(store, ref, b"x")
    with pytest.raises(IntegrityError, match="already holds 1 bytes"):
        store.put(b"honest bytes", name="log")


def test_streaming_yields_chunks_then_fails_at_the_end(store):
    ref = store.put(b"a" * 100, name="log")
    _tamper(store, ref, b"b" * 100)
    chunks = store.iter_chunks(ref, chunk_size=30)
    assert next(chunks) == b"b" * 30
    with pytest.raises(IntegrityError):
        list(chunks)


def test_missing_artifact_is_named(store):
    ref = ArtifactRef(name="dataset train", md5="0" * 32, sha256="0" * 64, size=1)
    assert not store.exists(ref)
    with pytest.raises(MissingArtifactError, match="dataset train is not stored"):
        store.get(ref)


def test_unwritable_root_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailableError, match="cannot create the store directory"):
        LocalStore(str(blocker / "remote"))


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096))
def test_round_trip_of_any_bytes(store, data):
    ref = store.put(data, name="any")
    assert store.get(ref) == data
    assert store.exists(ref)


def test_directory_listing_matches_dvc_add_byte_for_byte(store):
    # `dvc add d` of d/a = "a\n", d/b = "bb\n" writes exactly this .dir object (DVC 3.67).
    entries = {"b": store.put(b"bb\n", name="b"), "a": store.put(b"a\n", name="a")}
    ref = store.put_dir(entries, name="d")
    assert ref.is_dir and ref.md5 == "d1655b35b138ce503c2e319110048157"
    dvc_dir = (store.root / dvc_key(ref.md5, is_dir=True)).read_bytes()
    assert dvc_dir == (b'[{"md5": "60b725f10c9c85c70d97880dfe8191b3", "relpath": "a"}, '
                       b'{"md5": "bfcc9da4f2e1d313c63cd0a4ee7604e9", "relpath": "b"}]')
    listed = store.list_dir(ref)
    assert {path: r.sha256 for path, r in listed.items()} == {
        path: r.sha256 for path, r in entries.items()}
    assert listed["a"].name == "d/a"
    assert store.exists(ref)


def test_directory_listing_tamper_is_detected(store):
    ref = store.put_dir({"x/y": store.put(b"1", name="1")}, name="dir")
    path = store.root / object_key(ref)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"x/y", b"x/z"))
    with pytest.raises(IntegrityError, match="dir is tampered"):
        store.list_dir(ref)


def test_directory_entries_must_be_stored_and_well_named(store):
    stored = store.put(b"1", name="one")
    absent = ArtifactRef(name="ghost", md5="1" * 32, sha256="1" * 64, size=3)
    with pytest.raises(MissingArtifactError, match="ghost"):
        store.put_dir({"ghost": absent}, name="d")
    for bad in ["../up", "/abs", "a//b", "a/./b", ""]:
        with pytest.raises(ValueError, match="relative POSIX path"):
            store.put_dir({bad: stored}, name="d")
    with pytest.raises(ValueError, match="not a directory"):
        store.list_dir(stored)


WASP, OTHER = "0x" + "aB" * 20, "0x" + "cd" * 20


def test_a_pointer_names_an_artifact_once_in_its_owners_folder(store):
    ref = store.put(b"verdict", name="verdict")
    store.put_pointer(WASP, "orders/0xab/task-0/case", ref)
    assert (store.root / "pointers" / WASP.lower() / "orders/0xab/task-0/case").is_file()
    assert store.get_pointer(WASP, "orders/0xab/task-0/case") == ref
    store.put_pointer(WASP, "orders/0xab/task-0/case", ref)  # naming it again changes nothing
    other = store.put(b"another verdict", name="forged verdict")
    with pytest.raises(IntegrityError, match="pointer orders/0xab/task-0/case.*already names another artifact"):
        store.put_pointer(WASP, "orders/0xab/task-0/case", other)
    assert store.get_pointer(WASP, "orders/0xab/task-0/case") == ref
    with pytest.raises(MissingArtifactError, match=f"pointer orders/0xab/task-1/case of {WASP.lower()} is not stored"):
        store.get_pointer(WASP, "orders/0xab/task-1/case")
    store.put_pointer(OTHER, "orders/0xab/task-0/case", other)  # another party's folder: another name
    assert store.get_pointer(OTHER, "orders/0xab/task-0/case") == other
    assert store.get_pointer(WASP, "orders/0xab/task-0/case") == ref


@pytest.mark.parametrize("name", ["../escape", "/abs", "a//b", "UPPER", "a/./b", "", "x" * 201])
def test_a_pointer_name_is_a_plain_path(store, name):
    with pytest.raises(ValueError, match="pointer name"):
        store.put_pointer(WASP, name, store.put(b"x", name="x"))


def test_a_pointer_to_a_reference_too_long_to_read_back_is_refused_before_it_is_written(store):
    ref = store.put(b"x", name="x" * 5000)
    with pytest.raises(StorageError, match=r"pointer p: a pointer holds at most 4096 bytes, .* nothing was written"):
        store.put_pointer(WASP, "p", ref)
    with pytest.raises(MissingArtifactError):
        store.get_pointer(WASP, "p")
    short = ref.model_copy(update={"name": "x" * 3900})  # just under: written and read back
    store.put_pointer(WASP, "q", short)
    assert store.get_pointer(WASP, "q") == short


@pytest.mark.parametrize("owner", ["..", "a/b", "", "-x", "0x" + "a" * 63])
def test_a_pointer_owner_is_one_plain_segment(store, owner):
    with pytest.raises(ValueError, match="party"):
        store.put_pointer(owner, "p", store.put(b"x", name="x"))


@pytest.mark.parametrize("stored", [b"not json", b'{"name": "x"}', b"{" * 5000])
def test_a_pointer_that_holds_no_reference_is_named(store, stored):
    (store.root / "pointers" / WASP.lower()).mkdir(parents=True)
    (store.root / "pointers" / WASP.lower() / "p").write_bytes(stored)
    with pytest.raises(IntegrityError, match=f"pointer p of {WASP.lower()} is tampered"):
        store.get_pointer(WASP, "p")


# What every store does, pinned by exact answers and messages: keys, reads, directories and pointers,
# and what ``open_store`` hands to the S3 backend.
MD5, SHA = "0123456789abcdef" * 2, "fedcba9876543210" * 4


def test_keys_are_dvcs_addresses_and_bahens_listings():
    assert dvc_key(MD5) == f"files/md5/01/{MD5[2:]}"
    assert dvc_key(MD5, is_dir=True) == f"files/md5/01/{MD5[2:]}.dir"
    listing = ArtifactRef(name="d", md5=MD5, sha256=SHA, size=1, is_dir=True)
    assert object_key(listing) == f"dirs/fe/{SHA[2:]}.json"
    assert object_key(listing.model_copy(update={"is_dir": False})) == f"files/md5/01/{MD5[2:]}"


def test_the_longest_party_and_pointer_name_are_taken_and_one_more_is_not():
    assert party_folder("A" * 64) == "a" * 64
    assert pointer_key("0xAb", "n" * 200) == "pointers/0xab/" + "n" * 200
    for call in (lambda: party_folder("a" * 65), lambda: pointer_key("0xab", "n" * 201)):
        with pytest.raises(ValueError):
            call()


def test_reads_of_many_chunks_are_the_bytes_and_verify_rehashes_them(store):
    data = bytes(range(256)) * (CHUNK_SIZE // 128 + 3)  # three chunks
    ref = store.put(data, name="checkpoint")
    assert store.get(ref) == data
    store.verify(ref)
    address = store.root / dvc_key(ref.md5)
    address.chmod(0o644)
    address.write_bytes(data[:-1] + b"\x00")
    with pytest.raises(IntegrityError, match="artifact checkpoint is tampered or truncated: sha256 is "):
        store.verify(ref)


def test_a_stored_size_other_than_the_committed_one_is_named_exactly(store):
    ref = store.put(b"honest", name="report")
    address = store.root / dvc_key(ref.md5)
    address.chmod(0o644)
    for stored, detail in ((b"honest and more", "more than the committed 6 bytes are stored"),
                           (b"hone", "4 bytes stored, 6 committed")):
        address.write_bytes(stored)
        with pytest.raises(IntegrityError) as caught:
            b"".join(store.iter_chunks(ref, chunk_size=2))
        assert str(caught.value) == (f"artifact report is tampered or truncated: {detail}; do not use it, and fetch "
                                     "it again from a trusted copy")


def test_a_directory_without_dvcs_listing_is_not_stored(store):
    ref = store.put_dir({"a": store.put(b"a", name="a")}, name="bundle")
    assert store.exists(ref)
    (store.root / dvc_key(ref.md5, is_dir=True)).unlink()
    assert not store.exists(ref)


def test_directory_refusals_name_the_directory_and_the_entry(store, tmp_path):
    entry = store.put(b"a", name="a")
    with pytest.raises(ValueError, match="^directory bundle: entry path '../a' must be"):
        store.put_dir({"../a": entry}, name="bundle")
    listing = store.put_dir({"a": entry}, name="inner")
    with pytest.raises(ValueError) as caught:
        store.put_dir({"inner": listing}, name="bundle")
    assert str(caught.value) == ("directory bundle: entry inner is itself a directory; list its files under their "
                                 "full relative paths instead")
    absent = ArtifactRef(name="lost", md5=MD5, sha256=SHA, size=1)
    with pytest.raises(MissingArtifactError) as caught:
        store.put_dir({"a": absent}, name="bundle")
    assert f"artifact lost is not stored at {store.url} (needed by directory bundle);" in str(caught.value)


def test_pointer_refusals_are_exact_and_a_pointer_of_the_largest_size_is_read(store):
    ref = store.put(b"verdict", name="verdict")
    with pytest.raises(MissingArtifactError) as caught:
        store.get_pointer("0xAB", "orders/x")
    assert f"artifact pointer orders/x of 0xab is not stored at {store.url}/pointers/0xab/orders/x;" in str(caught.value)
    folder = store.root / "pointers" / "0xab"
    folder.mkdir(parents=True)
    largest = ref.model_dump_json().encode()
    (folder / "largest").write_bytes(largest + b" " * (4096 - len(largest)))  # JSON may end in blanks
    assert store.get_pointer("0xab", "largest") == ref
    (folder / "over").write_bytes(largest + b" " * (4097 - len(largest)))
    with pytest.raises(IntegrityError, match="pointer over of 0xab is tampered or truncated: 4097 bytes are stored, "
                                             "more than a pointer holds;"):
        store.get_pointer("0xab", "over")
    (folder / "junk").write_bytes(json.dumps({"name": "x"}).encode())
    with pytest.raises(IntegrityError, match="pointer junk of 0xab is tampered or truncated: it does not hold an "
                                             "artifact reference;"):
        store.get_pointer("0xab", "junk")


def test_a_store_names_its_backend_and_url(store):
    assert repr(store) == f"LocalStore({store.url!r})"


def test_open_store_hands_every_setting_to_the_s3_backend():
    store = open_store("s3://bucket/prefix", endpoint_url="http://127.0.0.1:9", region="eu-west-3",
                       access_key="AKIAEXAMPLE", secret_key="secret", party="0xAB")
    assert (store.bucket, store.prefix, store.endpoint_url, store.staging) == ("bucket", "prefix", "http://127.0.0.1:9",
                                                                               "staging/0xab/")
    assert store.client.meta.region_name == "eu-west-3"
    credentials = store.client._request_signer._credentials  # what every request is signed with
    assert (credentials.access_key, credentials.secret_key) == ("AKIAEXAMPLE", "secret")

"""The S3 endpoint goes down in the middle of a large put, of bytes or of a stream, or while a
reader asks whether an artifact is there and reads it."""

import os
import threading

import pytest

from storage.digest import Digest, iter_views
from storage.errors import StoreUnavailableError
from storage.s3 import S3Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Bytes go up as a multipart upload at their address; a stream's parts go up as staging objects.
_INPUTS = {"bytes": (lambda data: data, "UploadPart"),
           "stream": (lambda data: iter_views(data, 1 << 20), "PutObject")}


def _stop_after_first_part(store: S3Store, s3_server, operation: str,
                           restart_after_s: float | None) -> list:
    """Take the server down as soon as the first part is stored (from inside the upload)."""
    timers: list = []
    once = threading.Lock()

    def outage(**_) -> None:
        with once:  # parts finish on several threads; only the first one pulls the plug
            if not timers:
                s3_server.stop()
                timers.append(s3_server.restart_after(restart_after_s) if restart_after_s else None)

    store.client.meta.events.register(f"after-call.s3.{operation}", outage)
    return timers


def _keys(s3_server, store: S3Store) -> list[str]:
    listed = s3_server.client().list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "/")
    return [item["Key"] for item in listed.get("Contents", [])]


@pytest.mark.parametrize("kind", _INPUTS)
def test_upload_completes_after_the_server_comes_back(s3_server, kind):
    store = S3Store(s3_server.fresh_url(), endpoint_url=s3_server.endpoint_url,
                    part_size=5 << 20, max_concurrency=2, retry_deadline_s=30)
    data = os.urandom(30 << 20)
    given, operation = _INPUTS[kind]
    timers = _stop_after_first_part(store, s3_server, operation, restart_after_s=1.5)
    try:
        ref = store.put(given(data), name="checkpoint step 40")
    finally:
        timers[0].join()
    assert timers, "the outage never happened"
    assert store.get(ref) == data
    assert _keys(s3_server, store) == [f"{store.prefix}/files/md5/{ref.md5[:2]}/{ref.md5[2:]}"]


@pytest.mark.parametrize("kind", _INPUTS)
def test_upload_fails_cleanly_when_the_server_stays_down(s3_server, kind):
    store = S3Store(s3_server.fresh_url(), endpoint_url=s3_server.endpoint_url,
                    part_size=5 << 20, max_concurrency=2, max_attempts=1, retry_deadline_s=1)
    data = os.urandom(30 << 20)
    given, operation = _INPUTS[kind]
    timers = _stop_after_first_part(store, s3_server, operation, restart_after_s=None)
    try:
        with pytest.raises(StoreUnavailableError, match="cannot reach the S3 endpoint"):
            store.put(given(data), name="checkpoint step 40")
    finally:
        s3_server.start()
    assert timers
    ref = Digest().consume(iter_views(data)).ref("checkpoint step 40")
    assert not store.exists(ref)
    # Staging objects stored before the outage (at most the two parts in flight) could not be
    # deleted during it, and wait for a lifecycle rule; nothing else is there.
    left = _keys(s3_server, store)
    assert all(key.startswith(f"{store.prefix}/staging/") for key in left)
    assert len(left) <= {"bytes": 0, "stream": 2}[kind]


def test_reads_wait_for_the_server_to_come_back(s3_server):
    store = S3Store(s3_server.fresh_url(), endpoint_url=s3_server.endpoint_url, max_attempts=1, retry_deadline_s=30)
    ref = store.put(b"a signed verdict", name="verdict")
    for read in (store.exists, store.get):  # a HEAD, then a GET, each sent while the endpoint is away
        s3_server.stop()
        timer = s3_server.restart_after(1.5)
        try:
            assert read(ref)
        finally:
            timer.join()

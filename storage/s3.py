"""A store in an S3 bucket (AWS, MinIO, or any S3-protocol server), in DVC 3's remote layout.

An object's address is the md5 of its bytes, known only after the last byte, and S3 has no rename:
an object can only be created under a key known when its upload starts.

* Bytes in memory are hashed first, then a HEAD tells whether the address is taken (storing known
  content uploads nothing); if it is free they are uploaded there, in one ``PutObject`` up to
  ``part_size`` (8 MiB by default), as a multipart upload beyond.
* A stream is read once and need not fit in memory or on disk. Up to one part, it is held and
  stored as bytes. Beyond, each part is stored as its own object under ``staging/<party>/<uuid>/`` while
  it is hashed, at most ``max_concurrency`` parts in flight (and in memory). With md5, sha256
  and size known, a HEAD of the address decides: taken, only its size is checked; free, a
  multipart upload at the address copies the staging objects in, server-side
  (``UploadPartCopy``, one part each). The staging objects are deleted either way. The copy is
  work for the server (it reads and writes the bytes again), and a stream whose content is
  already stored is uploaded in full before that is known.

Every write to an address is conditional (``If-None-Match: *`` on ``PutObject`` and
``CompleteMultipartUpload``), so an address is written once; a multipart upload is no object until
it completes, so an address never holds a partial object, whatever fails. A crash between the
steps leaves staging objects or an incomplete upload behind, never anything at an address:
lifecycle rules on ``staging/`` and for incomplete uploads reclaim them
(:meth:`S3Store.ensure_cleanup_rules`, ``bahen store cleanup-rules``).
"""

import datetime as dt
import itertools
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal, Self, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage.digest import Digest, iter_views
from storage.errors import (
    IntegrityError,
    MissingArtifactError,
    RetentionUnsupportedError,
    StoreUnavailableError,
)
from storage.refs import ArtifactRef
from storage.s3faults import error_code, unavailable, with_retries
from storage.store import ArtifactStore, object_key, staging_folder

T = TypeVar("T")
_EXISTS_CODES = {"PreconditionFailed", "412"}
# S3's limits on multipart uploads: the smallest part but the last, the largest part.
_MIN_PART, _MAX_PART = 5 << 20, 5 << 30
# How often a read that loses its connection mid-body is resumed before giving up.
_MAX_RESUMES = 5


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"store URL {url!r} names no bucket; write it as s3://bucket/prefix")
    return bucket, prefix.strip("/")


class S3Store(ArtifactStore):
    """Objects under ``s3://bucket/prefix/files/md5/``; see the module docstring for guarantees.

    ``retention_days`` turns on object lock (``retention_mode`` COMPLIANCE or GOVERNANCE) for every
    new object; the bucket must have been created with object lock enabled. ``party`` is whose
    credentials the store uses: its uploads are staged under ``staging/<party>/``, where that
    party's store policy (``storage.policy``) lets it write and delete; without it, under ``staging/``.
    """

    def __init__(self, url: str, *, endpoint_url: str | None = None, region: str | None = None,
                 access_key: str | None = None, secret_key: str | None = None,
                 part_size: int = 8 << 20, max_concurrency: int = 10,
                 retention_days: int | None = None,
                 retention_mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE",
                 max_attempts: int = 5, retry_deadline_s: float = 60.0, party: str | None = None) -> None:
        self.bucket, self.prefix = split_url(url)
        self.staging = staging_folder(party)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.endpoint_url = endpoint_url
        self.part_size = max(part_size, _MIN_PART)
        self.max_concurrency = max_concurrency
        self.retention_days = retention_days
        self.retention_mode = retention_mode
        self.retry_deadline_s = retry_deadline_s
        config = Config(retries={"mode": "standard", "max_attempts": max_attempts},
                        max_pool_connections=max_concurrency + 2,
                        connect_timeout=5, read_timeout=60,
                        # MinIO and most self-hosted servers need path-style addressing.
                        s3={"addressing_style": "path" if endpoint_url else "auto"})
        session = boto3.session.Session(aws_access_key_id=access_key,
                                        aws_secret_access_key=secret_key, region_name=region)
        self.client = session.client("s3", endpoint_url=endpoint_url, config=config)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _unavailable(self, exc: Exception) -> StoreUnavailableError:
        return unavailable(exc, url=self.url, endpoint=self.endpoint_url or "AWS default")

    def put(self, data: bytes | Iterable[bytes], *, name: str) -> ArtifactRef:
        """Store ``data``, reading a stream once; nothing is written if its address is taken."""
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                return self._put_bytes(memoryview(data).cast("B"), name)
            return self._put_stream(iter_views(data), name)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc) from exc

    def ensure_cleanup_rules(self, days: int = 1) -> list[dict]:
        """Add the bucket lifecycle rules that reclaim what an interrupted put leaves; return them.

        Two rules, named after the store's prefix so that stores sharing a bucket keep their own:
        objects under ``<prefix>/staging/`` expire ``days`` after they were written (and so do
        their noncurrent versions, in a versioned or object-lock bucket), and multipart uploads
        under ``<prefix>/`` never completed are aborted ``days`` after they began. The bucket's
        other rules are kept; running it again replaces only these two.
        """
        if days < 1:
            raise ValueError(f"days must be at least 1, not {days}")
        scope = self.prefix or "(bucket)"
        ours = [
            {"ID": f"bahen-staging {scope}", "Status": "Enabled", "Filter": {"Prefix": self._key("staging/")},
             "Expiration": {"Days": days}, "NoncurrentVersionExpiration": {"NoncurrentDays": days}},
            {"ID": f"bahen-incomplete-uploads {scope}", "Status": "Enabled", "Filter": {"Prefix": self._key("")},
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days}},
        ]
        try:
            try:
                rules = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
            except ClientError as exc:
                if error_code(exc) != "NoSuchLifecycleConfiguration":
                    raise
                rules = []
            names = {rule["ID"] for rule in ours}
            with_retries(lambda: self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket,
                LifecycleConfiguration={"Rules": [r for r in rules if r.get("ID") not in names] + ours}),
                deadline_s=self.retry_deadline_s)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc) from exc
        return ours

    def _put_bytes(self, view: memoryview, name: str) -> ArtifactRef:
        ref = Digest().consume(iter_views(view)).ref(name)
        key = self._key(object_key(ref))
        stored = self._head_size(key)
        if stored is not None:
            _check_existing(ref, stored)
        elif ref.size <= self.part_size:
            self._put_object(key, bytes(view))
        else:
            self._multipart(key, ref.size, _slices(view, self._part_sizes()), self._upload_part)
        return ref

    def _put_stream(self, chunks: Iterator[memoryview], name: str) -> ArtifactRef:
        parts = _assemble(chunks, self._part_sizes())
        head = list(itertools.islice(parts, 2))
        if len(head) < 2:  # one part at most, in memory: hashing first costs less than a copy
            return self._put_bytes(memoryview(head[0] if head else b""), name)
        digest, staging = Digest(), self._key(f"{self.staging}{uuid.uuid4().hex}")
        sender = _Sender(lambda number, part: self._put_staging(f"{staging}/{number}", part),
                         self.max_concurrency)
        try:
            with sender:
                digest.consume(itertools.chain(head, parts), sender.submit)
                sources = sender.results()
            ref = digest.ref(name)
            key = self._key(object_key(ref))
            stored = self._head_size(key)
            if stored is not None:
                _check_existing(ref, stored)
            else:
                self._multipart(key, ref.size, sources, self._copy_part)
        finally:
            # Every part sent, stored or not: one whose reply was lost may be stored all the same.
            self._delete([f"{staging}/{number}" for number in range(1, sender.count + 1)])
        return ref

    def _part_sizes(self) -> Iterator[int]:
        # A stream's size is unknown until its end: doubling every 1,000 parts keeps any object
        # within S3's 10,000 parts, and small objects in small parts.
        for number in itertools.count():
            yield min(self.part_size << (number // 1000), _MAX_PART)

    def _multipart(self, key: str, size: int, items: Iterable[T],
                   send_part: Callable[[str, str, int, T], dict]) -> None:
        """A multipart upload at ``key``, completed only if the key is free, aborted on failure.

        ``send_part(key, upload_id, number, item)`` makes part ``number`` out of ``item``.
        """
        try:
            upload_id = with_retries(lambda: self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ChecksumAlgorithm="CRC32", **self._lock_args()),
                deadline_s=self.retry_deadline_s)["UploadId"]
        except ClientError as exc:
            self._raise_lock_error(exc)
            raise
        try:
            with _Sender(lambda number, item: send_part(key, upload_id, number, item),
                         self.max_concurrency) as sender:
                for item in items:
                    sender.submit(item)
                parts = sender.results()
            with_retries(lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, IfNoneMatch="*",
                MultipartUpload={"Parts": parts}), deadline_s=self.retry_deadline_s)
        except ClientError as exc:
            self._abort(key, upload_id)
            # NoSuchUpload after a retried commit: the first attempt landed but its reply was lost.
            landed = error_code(exc) == "NoSuchUpload" and self._head_size(key) == size
            if error_code(exc) not in _EXISTS_CODES and not landed:
                raise
        except BaseException:
            self._abort(key, upload_id)
            raise

    def _upload_part(self, key: str, upload_id: str, number: int, part: memoryview) -> dict:
        reply = with_retries(lambda: self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(part),
            ChecksumAlgorithm="CRC32"), deadline_s=self.retry_deadline_s)
        return {"PartNumber": number, "ETag": reply["ETag"],
                "ChecksumCRC32": reply["ChecksumCRC32"]}

    def _copy_part(self, key: str, upload_id: str, number: int, source: str) -> dict:
        reply = with_retries(lambda: self.client.upload_part_copy(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
            CopySource={"Bucket": self.bucket, "Key": source}), deadline_s=self.retry_deadline_s)
        copied = reply["CopyPartResult"]
        # AWS returns the part's CRC32 and wants it back on completion; moto returns none.
        return {"PartNumber": number, **{field: copied[field] for field in ("ETag", "ChecksumCRC32")
                                         if field in copied}}

    def _put_staging(self, key: str, part: bytearray) -> str:
        with_retries(lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=part),
                     deadline_s=self.retry_deadline_s)
        return key

    def _abort(self, key: str, upload_id: str) -> None:
        # Best effort: an upload that is never completed is no object, and a bucket lifecycle
        # rule (AbortIncompleteMultipartUpload) reclaims its parts if the server is unreachable.
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError):
            pass

    def _delete(self, keys: list[str]) -> None:
        # Best effort: a lifecycle rule on staging/ reclaims what an unreachable server keeps.
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": key} for key in keys[start:start + 1000]]
            try:
                reply = self.client.delete_objects(Bucket=self.bucket,
                                                   Delete={"Objects": batch, "Quiet": True})
                # A server that checks a bulk delete against the bucket, not each key (moto does),
                # refuses it to a party that may delete only in its staging folder: one by one, then.
                for error in reply.get("Errors", []):
                    if error.get("Code") == "AccessDenied":
                        self.client.delete_object(Bucket=self.bucket, Key=error["Key"])
            except (BotoCoreError, ClientError):
                return

    def _lock_args(self) -> dict:
        if self.retention_days is None:
            return {}
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.retention_days)
        return {"ObjectLockMode": self.retention_mode, "ObjectLockRetainUntilDate": until}

    def _put_object(self, key: str, body: bytes) -> None:
        try:
            with_retries(lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", **self._lock_args()),
                deadline_s=self.retry_deadline_s)
        except ClientError as exc:
            if error_code(exc) in _EXISTS_CODES:
                return  # another writer stored the same address first: write-once, done
            self._raise_lock_error(exc)
            raise

    def _raise_lock_error(self, exc: ClientError) -> None:
        if self.retention_days is not None and error_code(exc) == "InvalidRequest":
            raise RetentionUnsupportedError(
                f"bucket {self.bucket} does not accept object lock retention ({exc}); create it "
                "with object lock enabled, or open the store without retention_days") from exc

    def _stored_size(self, key: str) -> int | None:
        return self._head_size(self._key(key))

    def _head_size(self, full_key: str) -> int | None:
        try:
            head = with_retries(lambda: self.client.head_object(Bucket=self.bucket, Key=full_key),
                                deadline_s=self.retry_deadline_s)
        except ClientError as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise self._unavailable(exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable(exc) from exc
        return head["ContentLength"]

    def _read(self, key: str, ref: ArtifactRef, chunk_size: int) -> Iterator[bytes]:
        """One streaming GET, resumed with a Range request if the connection drops mid-body."""
        offset, resumes = 0, 0
        while True:
            body = self._open_body(key, ref, offset)
            try:
                while chunk := body.read(chunk_size):
                    offset += len(chunk)
                    yield chunk
                return
            except BotoCoreError as exc:
                resumes += 1
                if resumes > _MAX_RESUMES or offset >= ref.size:
                    raise self._unavailable(exc) from exc
            finally:
                body.close()

    def _open_body(self, key: str, ref: ArtifactRef, offset: int):
        extra = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            reply = with_retries(lambda: self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), **extra), deadline_s=self.retry_deadline_s)
        except ClientError as exc:
            if error_code(exc) in {"NoSuchKey", "404"}:
                raise MissingArtifactError(ref.name, f"{self.url}/{key}") from None
            raise self._unavailable(exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable(exc) from exc
        stored = reply["ContentLength"] + offset
        if stored != ref.size:
            reply["Body"].close()
            raise IntegrityError(ref.name, f"{stored} bytes stored, {ref.size} committed")
        return reply["Body"]

    def _put_small(self, key: str, data: bytes) -> None:
        if self._stored_size(key) is not None:
            return
        try:
            self._put_object(self._key(key), data)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc) from exc


def _check_existing(ref: ArtifactRef, stored: int) -> None:
    # Same md5 but another size means someone stored other bytes at this address.
    if stored != ref.size:
        raise IntegrityError(ref.name, f"its address already holds {stored} bytes, not {ref.size}; "
                             "the stored object was replaced")


def _slices(view: memoryview, sizes: Iterator[int]) -> Iterator[memoryview]:
    """Cut bytes in memory into parts of the given sizes (the last one shorter), without copies."""
    start = 0
    while start < len(view):
        stop = start + next(sizes)
        yield view[start:stop]
        start = stop


def _assemble(chunks: Iterable[memoryview], sizes: Iterator[int]) -> Iterator[bytearray]:
    """Copy a stream's chunks into parts of the given sizes (the last one shorter).

    The chunks are copied because a producer may reuse its buffer once the next one is pulled.
    """
    part, size = bytearray(), next(sizes)
    for chunk in chunks:
        while chunk:
            taken = chunk[:size - len(part)]
            part += taken
            chunk = chunk[len(taken):]
            if len(part) == size:
                yield part
                part, size = bytearray(), next(sizes)
    if part:
        yield part


class _Sender:
    """Runs ``send(number, item)`` for items numbered from 1, on ``concurrency`` threads.

    ``submit`` blocks while ``concurrency`` items are in flight, so an input is read no faster than
    it is sent and at most that many parts are held; once one has failed it raises that failure,
    so the input stops being read. Leaving the block cancels what has not started.
    """

    def __init__(self, send: Callable[[int, T], object], concurrency: int) -> None:
        self._send = send
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="s3-part")
        self._futures: list[Future] = []
        self._failure: BaseException | None = None

    @property
    def count(self) -> int:
        """How many items were submitted."""
        return len(self._futures)

    def submit(self, item: T) -> None:
        """Send ``item`` as the next number once a thread is free."""
        self._slots.acquire()
        if self._failure is not None:
            self._slots.release()
            raise self._failure
        future = self._pool.submit(self._send, len(self._futures) + 1, item)
        future.add_done_callback(self._done)
        self._futures.append(future)

    def results(self) -> list:
        """What ``send`` returned for each item, in order, once all are sent."""
        return [future.result() for future in self._futures]

    def _done(self, future: Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._failure = self._failure or future.exception()
        self._slots.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        # After a failure, the items not yet started would only retry into the same failure.
        self._pool.shutdown(wait=True, cancel_futures=True)

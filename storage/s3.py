"""A store in an S3 bucket (AWS, MinIO, or any S3-protocol server), in DVC 3's remote layout.

S3 has no rename, so an object can only be created under a key known before the upload starts:
``put`` hashes first (one pass over the input, spooled to a temporary file when the input is a
stream), asks whether the address is taken (a HEAD: storing known content costs no upload), then
creates the object with a conditional write (``If-None-Match: *``), so an address is written once.
A multipart upload is invisible until it completes, so no partial object ever appears under an
address, even when the endpoint fails mid-upload.
"""

import datetime as dt
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Literal

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
from storage.store import ArtifactStore, object_key

_EXISTS_CODES = {"PreconditionFailed", "412"}
# Reads byte ranges [start, stop) of the bytes being uploaded; called from several threads.
Reader = Callable[[int, int], bytes | memoryview]
# S3's limits on multipart uploads.
_MIN_PART, _MAX_PARTS = 5 << 20, 10_000
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
    new object; the bucket must have been created with object lock enabled.
    """

    def __init__(self, url: str, *, endpoint_url: str | None = None, region: str | None = None,
                 access_key: str | None = None, secret_key: str | None = None,
                 part_size: int = 8 << 20, max_concurrency: int = 10,
                 retention_days: int | None = None,
                 retention_mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE",
                 max_attempts: int = 5, retry_deadline_s: float = 60.0) -> None:
        self.bucket, self.prefix = split_url(url)
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
        """Hash ``data`` in one pass, then upload it unless its address is taken."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            view = memoryview(data).cast("B")
            ref = Digest().consume(iter_views(view)).ref(name)
            self._upload(ref, lambda start, stop: view[start:stop])
            return ref
        with tempfile.TemporaryFile(prefix="bahen-put-") as spool:
            ref = Digest().consume(iter_views(data), spool.write).ref(name)
            spool.flush()
            self._upload(ref, _file_reader(spool))
        return ref

    def _upload(self, ref: ArtifactRef, read: Reader) -> None:
        key = self._key(object_key(ref))
        stored = self._stored_size(object_key(ref))
        if stored is not None:
            _check_existing(ref, stored)
            return
        try:
            if ref.size <= self.part_size:
                self._put_object(key, bytes(read(0, ref.size)))
            else:
                self._multipart(key, ref.size, read)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc) from exc

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

    def _multipart(self, key: str, size: int, read: Reader) -> None:
        try:
            upload = with_retries(lambda: self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ChecksumAlgorithm="CRC32", **self._lock_args()),
                deadline_s=self.retry_deadline_s)
        except ClientError as exc:
            self._raise_lock_error(exc)
            raise
        upload_id = upload["UploadId"]
        try:
            parts = self._upload_parts(key, upload_id, size, read)
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

    def _upload_parts(self, key: str, upload_id: str, size: int, read: Reader) -> list[dict]:
        part_size = max(self.part_size, -(-size // _MAX_PARTS))

        def upload_part(number: int, start: int) -> dict:
            body = bytes(read(start, min(start + part_size, size)))
            reply = with_retries(lambda: self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
                ChecksumAlgorithm="CRC32"), deadline_s=self.retry_deadline_s)
            return {"PartNumber": number, "ETag": reply["ETag"],
                    "ChecksumCRC32": reply["ChecksumCRC32"]}

        starts = range(0, size, part_size)
        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="s3-part") as pool:
            futures = [pool.submit(upload_part, n, start) for n, start in enumerate(starts, 1)]
            try:
                return [future.result() for future in futures]
            except BaseException:
                # One part has given up: the others would only retry into the same failure.
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def _abort(self, key: str, upload_id: str) -> None:
        # Best effort: an upload that is never completed is no object, and a bucket lifecycle
        # rule (AbortIncompleteMultipartUpload) reclaims its parts if the server is unreachable.
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError):
            pass

    def _stored_size(self, key: str) -> int | None:
        return self._head_size(self._key(key))

    def _head_size(self, full_key: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full_key)
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


def _file_reader(spool: IO[bytes]) -> Reader:
    """Positional reads of a file, safe from several threads at once."""
    fd = spool.fileno()
    return lambda start, stop: os.pread(fd, stop - start, start)

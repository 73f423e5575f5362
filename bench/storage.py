"""Storage benchmark: bahen's store against the plain tools it stands on, in the same run.

* S3: ``S3Store.put`` / ``get`` of one artifact against raw boto3 ``upload_file`` /
  ``download_file`` of the same bytes to the same server. bahen's put also computes md5 and
  sha256 and checks the address first (a stream of chunks goes through staging objects and a
  server-side copy); its get verifies sha256. Without an endpoint, moto's S3
  server runs on 127.0.0.1 in its own process (as a real server would, not sharing our GIL).
* Local: ``LocalStore.put`` (md5 + sha256 + write, one pass) against ``hashlib.md5`` alone over the
  same bytes, the slowest step any DVC-addressed store must take.

Ratio = baseline seconds / bahen seconds (above 1.0: bahen is faster). Baseline and bahen run
alternately, and each figure is the best of ``repeats``, so load from other processes hits both.

Before every timed call, baseline and bahen alike, ``os.sync()`` runs untimed. A call that writes
1 GiB leaves 1 GiB of dirty page cache behind, written back over the next seconds, and a write
timed during that writeback is throttled by the disk (a plain 1 GiB write to a new file takes
0.2 s with a clean cache here, 2 s or more with 1-2 GiB still dirty). So each figure measures its
call, not the writeback of the call before; no call fsyncs its own data. The files a local call
wrote are deleted after it, untimed.
"""

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3

from storage.local import LocalStore
from storage.s3 import S3Store

RESULTS = Path(__file__).with_name("results") / "storage.json"
CHUNK = 4 << 20


def _race(repeats: int, **calls: Callable[[], object]) -> dict[str, float]:
    """Best time of each call over ``repeats`` rounds, the calls alternating within a round.

    Dirty pages are written back before each call; a call that returns a function (deleting what
    it wrote) has it run after it. Neither is timed.
    """
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for label, call in calls.items():
            os.sync()
            start = time.perf_counter()
            cleanup = call()
            best[label] = min(best[label], time.perf_counter() - start)
            if callable(cleanup):
                cleanup()
    return best


def _md5_only(data: bytes) -> str:
    view, digest = memoryview(data), hashlib.md5(usedforsecurity=False)
    for start in range(0, len(view), CHUNK):
        digest.update(view[start:start + CHUNK])
    return digest.hexdigest()


def bench_local(data: bytes, repeats: int) -> dict:
    """LocalStore.put into a fresh directory against md5 alone."""
    with tempfile.TemporaryDirectory(prefix="bahen-bench-") as root:
        def put() -> Callable[[], None]:
            store = LocalStore(os.path.join(root, uuid.uuid4().hex))
            store.put(data, name="bench")
            return lambda: shutil.rmtree(store.root)

        def write() -> Callable[[], None]:  # the floor set by the disk: the same bytes, a new file
            path = os.path.join(root, uuid.uuid4().hex)
            with open(path, "wb") as handle:
                handle.write(data)
            return lambda: os.remove(path)

        best = _race(repeats, md5=lambda: _md5_only(data), write=write, put=put)
    return {"md5_only_s": best["md5"], "write_only_s": best["write"], "put_s": best["put"],
            "put_vs_md5": best["md5"] / best["put"],
            "put_vs_md5_then_write": (best["md5"] + best["write"]) / best["put"]}


def _empty(client, bucket: str, prefix: str) -> None:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    for item in listed.get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])


def bench_s3(data: bytes, endpoint_url: str, bucket: str, repeats: int) -> dict:
    """S3Store put/get against boto3 upload_file/download_file on the same server."""
    client = boto3.client("s3", endpoint_url=endpoint_url)
    prefix = f"bench-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="bahen-bench-") as tmp:
        source, target = Path(tmp) / "source.bin", Path(tmp) / "target.bin"
        source.write_bytes(data)

        def store() -> S3Store:
            # A new, empty prefix each time, so that no put is a dedup no-op; the server keeps
            # one copy at a time.
            _empty(client, bucket, prefix)
            return S3Store(f"s3://{bucket}/{prefix}/{uuid.uuid4().hex}", endpoint_url=endpoint_url)

        def put_stream() -> None:
            with open(source, "rb") as handle:
                store().put(iter(lambda: handle.read(CHUNK), b""), name="bench")

        puts = _race(repeats,
                     upload_file=lambda: (_empty(client, bucket, prefix),
                                          client.upload_file(str(source), bucket, f"{prefix}/raw")),
                     put_bytes=lambda: store().put(data, name="bench"),
                     put_stream=put_stream)
        reader = store()
        ref = reader.put(data, name="bench")
        client.upload_file(str(source), bucket, f"{prefix}/raw")
        gets = _race(repeats,
                     download_file=lambda: client.download_file(bucket, f"{prefix}/raw", str(target)),
                     get=lambda: reader.get(ref),
                     put_existing=lambda: reader.put(data, name="bench"))
        _empty(client, bucket, prefix)
    return {"upload_file_s": puts["upload_file"], "put_bytes_s": puts["put_bytes"],
            "put_stream_s": puts["put_stream"], "download_file_s": gets["download_file"],
            "get_s": gets["get"], "put_existing_s": gets["put_existing"],
            "put_bytes_vs_upload_file": puts["upload_file"] / puts["put_bytes"],
            "put_stream_vs_upload_file": puts["upload_file"] / puts["put_stream"],
            "get_vs_download_file": gets["download_file"] / gets["get"]}


@contextlib.contextmanager
def moto_server(bucket: str) -> Iterator[str]:
    """moto's S3 server in a child process on 127.0.0.1 with ``bucket``; yields its endpoint."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        for _ in range(100):
            try:
                client.create_bucket(Bucket=bucket)
                break
            except Exception:  # not listening yet
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def run(size_mib: int = 1024, repeats: int = 2, endpoint_url: str | None = None,
        bucket: str = "bahen-bench") -> dict:
    """Run both comparisons on ``size_mib`` MiB of random bytes; write and return the results.

    Without ``endpoint_url`` a moto S3 server is started on loopback for the run (fake
    credentials); with one, credentials come from the environment and ``bucket`` must exist.
    """
    data = os.urandom(size_mib << 20)
    result: dict = {"size_mib": size_mib, "repeats": repeats, "cpus": os.cpu_count(),
                    "load_avg_1m": os.getloadavg()[0]}
    result["local"] = bench_local(data, repeats)
    with contextlib.ExitStack() as stack:
        if endpoint_url is None:
            endpoint_url = stack.enter_context(moto_server(bucket))
            result["s3_server"] = "moto (loopback, own process)"
        else:
            result["s3_server"] = endpoint_url
        result["s3"] = bench_s3(data, endpoint_url, bucket, repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_table(result: dict) -> None:
    """Print the figures as a table."""
    local, s3, size = result["local"], result["s3"], result["size_mib"]
    rows = [
        ("local put (md5+sha256+write)", "hashlib md5 alone", local["put_s"], local["md5_only_s"],
         local["put_vs_md5"]),
        ("local put", "md5 then plain write", local["put_s"],
         local["md5_only_s"] + local["write_only_s"], local["put_vs_md5_then_write"]),
        ("s3 put (bytes)", "boto3 upload_file", s3["put_bytes_s"], s3["upload_file_s"],
         s3["put_bytes_vs_upload_file"]),
        ("s3 put (stream of chunks)", "boto3 upload_file", s3["put_stream_s"],
         s3["upload_file_s"], s3["put_stream_vs_upload_file"]),
        ("s3 get (sha256-verified)", "boto3 download_file", s3["get_s"], s3["download_file_s"],
         s3["get_vs_download_file"]),
    ]
    print(f"storage benchmark: {size} MiB, S3 server {result['s3_server']}, best of "
          f"{result['repeats']}, load {result['load_avg_1m']:.1f} on {result['cpus']} CPUs  "
          "(ratio = baseline s / bahen s)")
    print(f"{'bahen':30} {'baseline':22} {'bahen s':>8} {'base s':>8} {'ratio':>6} {'MiB/s':>7}")
    for name, base, ours, theirs, ratio in rows:
        print(f"{name:30} {base:22} {ours:8.2f} {theirs:8.2f} {ratio:6.2f} {size / ours:7.0f}")
    print(f"s3 put of content already stored: {s3['put_existing_s'] * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--endpoint-url", default=None)
    parser.add_argument("--bucket", default="bahen-bench")
    args = parser.parse_args()
    print_table(run(args.size_mib, args.repeats, args.endpoint_url, args.bucket))

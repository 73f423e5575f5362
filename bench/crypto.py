"""Streaming encryption throughput and memory against `openssl speed`, on one core.

Encrypts a stream of ``size`` bytes with :func:`privacy.stream.encrypt_chunks` and decrypts it
with :func:`privacy.stream.decrypt_chunks` (the ciphertext flows straight from one into the other,
so nothing of ``size`` is ever held), and measures ``openssl speed -evp aes-256-gcm`` at the same
block size in the same run and on the same core. Each figure is the best of ``repeats`` runs,
because a shared machine only ever makes a run slower. Memory is the peak growth of the
process's resident set above its level before the stream started, sampled every 5 ms.

Run: ``python bench/crypto.py [--size BYTES] [--repeats N]``; writes ``bench/results/crypto.json``.
"""

import argparse
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import psutil

from privacy.stream import DEFAULT_CHUNK_SIZE, EncryptionContext, decrypt_chunks, encrypt_chunks, new_data_key

RESULTS = Path(__file__).parent / "results" / "crypto.json"
GIB = 1024**3
MIB = 1024**2
TARGET_RATIO = 1.0
TARGET_MEMORY_MIB = 64
_CONTEXT = EncryptionContext("bench", "stream")


class _PeakRss:
    """Samples the resident set size in a background thread; ``growth`` is peak minus start."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.start = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "_PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.start


def _plaintext(size: int, chunk_size: int):
    block = os.urandom(chunk_size)
    for start in range(0, size, chunk_size):
        yield block[: min(chunk_size, size - start)]


def _drain(pieces) -> int:
    return sum(len(piece) for piece in pieces)


def _time_encrypt(key: bytes, size: int, chunk_size: int) -> float:
    start = time.perf_counter()
    _drain(encrypt_chunks(key, _plaintext(size, chunk_size), context=_CONTEXT, chunk_size=chunk_size))
    return time.perf_counter() - start


def _time_round_trip(key: bytes, size: int, chunk_size: int) -> float:
    start = time.perf_counter()
    sealed = encrypt_chunks(key, _plaintext(size, chunk_size), context=_CONTEXT, chunk_size=chunk_size)
    if _drain(decrypt_chunks(key, sealed, context=_CONTEXT)) != size:
        raise RuntimeError("the round trip lost bytes")
    return time.perf_counter() - start


def openssl_speed(block: int, *, decrypt: bool = False, seconds: int = 2) -> float:
    """``openssl speed -evp aes-256-gcm`` throughput in bytes per second at ``block`` bytes."""
    command = ["openssl", "speed", "-mr", "-elapsed", "-seconds", str(seconds), "-bytes", str(block)]
    command += ["-decrypt"] if decrypt else []
    output = subprocess.run(command + ["-evp", "aes-256-gcm"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"^\+F:\d+:AES-256-GCM:([0-9.]+)", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"unexpected openssl speed output: {output[-300:]}")
    return float(match.group(1))


def run(size: int = GIB, chunk_size: int = DEFAULT_CHUNK_SIZE, repeats: int = 3) -> dict:
    """Measure bahen's and openssl's AES-256-GCM throughput on one core; returns the figures."""
    pinned = hasattr(os, "sched_setaffinity")
    if pinned:
        cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cores)})  # one core, inherited by openssl
    try:
        return _measure(size, chunk_size, repeats)
    finally:
        if pinned:
            os.sched_setaffinity(0, cores)


def _measure(size: int, chunk_size: int, repeats: int) -> dict:
    key = new_data_key()
    encrypt_s, round_trip_s = [], []
    with _PeakRss() as memory:
        for _ in range(repeats):
            encrypt_s.append(_time_encrypt(key, size, chunk_size))
            round_trip_s.append(_time_round_trip(key, size, chunk_size))
    # Decryption alone is the round trip less the encryption feeding it.
    decrypt_s = min(round_trip_s) - min(encrypt_s)
    openssl_encrypt = max(openssl_speed(chunk_size) for _ in range(repeats))
    openssl_decrypt = max(openssl_speed(chunk_size, decrypt=True) for _ in range(repeats))
    encrypt_ratio = size / min(encrypt_s) / openssl_encrypt
    decrypt_ratio = size / decrypt_s / openssl_decrypt
    return {
        "size_bytes": size, "chunk_size": chunk_size, "repeats": repeats, "cores": 1,
        "encrypt_bytes_per_s": size / min(encrypt_s), "decrypt_bytes_per_s": size / decrypt_s,
        "openssl_encrypt_bytes_per_s": openssl_encrypt, "openssl_decrypt_bytes_per_s": openssl_decrypt,
        "encrypt_ratio": encrypt_ratio, "decrypt_ratio": decrypt_ratio,
        "peak_rss_growth_bytes": memory.growth,
        "target_ratio": TARGET_RATIO, "target_memory_bytes": TARGET_MEMORY_MIB * MIB,
        "meets_targets": min(encrypt_ratio, decrypt_ratio) >= TARGET_RATIO
        and memory.growth <= TARGET_MEMORY_MIB * MIB,
    }


def _table(result: dict) -> str:
    gb = 1e9
    rows = [
        ("encrypt", result["encrypt_bytes_per_s"] / gb, result["openssl_encrypt_bytes_per_s"] / gb,
         result["encrypt_ratio"]),
        ("decrypt", result["decrypt_bytes_per_s"] / gb, result["openssl_decrypt_bytes_per_s"] / gb,
         result["decrypt_ratio"]),
    ]
    lines = [f"{result['size_bytes'] / GIB:.2f} GiB stream, {result['chunk_size'] // 1024} KiB chunks, one core",
             f"{'':8} {'bahen GB/s':>11} {'openssl GB/s':>13} {'ratio':>7}"]
    lines += [f"{name:8} {ours:11.2f} {theirs:13.2f} {ratio:6.2f}x" for name, ours, theirs, ratio in rows]
    lines.append(f"peak RSS growth {result['peak_rss_growth_bytes'] / MIB:.1f} MiB "
                 f"(target <= {TARGET_MEMORY_MIB} MiB); meets targets: {result['meets_targets']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=GIB, help="stream size in bytes (default 1 GiB)")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = run(args.size, args.chunk_size, args.repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(result))


if __name__ == "__main__":
    main()

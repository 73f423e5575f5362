"""Session fixture `anvil`: a real anvil node (from npm `@foundry-rs/anvil`) on 127.0.0.1.

anvil writes the chain's older states to disk, a few GB over the suite, under ``~/.foundry`` unless
told where, and never removes them: every node here keeps them in a folder of the caller's that
``stop_anvil`` removes.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from bahen.devnet_services import PROJECT_DIR, DevnetError, anvil_binary, free_port


def _healthy(url: str) -> bool:
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        return "result" in requests.post(url, json=body, timeout=1).json()
    except (requests.RequestException, ValueError):
        return False


def start_anvil(binary: Path, cache: Path, attempts: int = 3, *, state: Path | None = None,
                port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Starts anvil on a free loopback port (or ``port``), its older states in ``cache``; retries when
    another process took the port first.

    With ``state``, anvil loads its chain from that file at start and writes it back when stopped,
    as a node with persisted state restarts.
    """
    for _ in range(attempts - 1):
        try:
            return _start_once(binary, cache, state=state, port=port)
        except PortTaken:
            if port is not None:
                time.sleep(0.5)  # the stopped node's port may take a moment to free
    return _start_once(binary, cache, state=state, port=port)


class PortTaken(RuntimeError):
    """anvil exited at start, most likely because the port was taken between probe and bind."""


def _start_once(binary: Path, cache: Path, timeout: float = 30.0, *, state: Path | None = None,
                port: int | None = None) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", str(port), "--silent", "--balance", "1000000",
         "--cache-path", str(cache), *(["--state", str(state)] if state else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PortTaken(f"anvil exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        if _healthy(url):
            return proc, url
        time.sleep(0.1)
    stop_anvil(proc, cache)
    raise RuntimeError(f"anvil did not answer at {url} within {timeout:.0f} s")


def stop_anvil(proc: subprocess.Popen, cache: Path) -> None:
    """Stops the node and removes the states it cached."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def anvil(tmp_path_factory):
    """Yields the RPC URL of a fresh anvil node for the test session, and stops it afterwards."""
    try:
        binary = anvil_binary(PROJECT_DIR)
    except DevnetError as missing:
        pytest.skip(str(missing))
    cache = tmp_path_factory.mktemp("anvil-cache")
    proc, url = start_anvil(binary, cache)
    try:
        yield url
    finally:
        stop_anvil(proc, cache)

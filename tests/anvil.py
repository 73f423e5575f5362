"""Session fixture `anvil`: a real anvil node (from npm `@foundry-rs/anvil`) on 127.0.0.1."""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def anvil_binary() -> Path | None:
    """The platform binary npm installed, else the node wrapper, else one on PATH."""
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    for candidate in (
        ROOT / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil",
        ROOT / "node_modules" / ".bin" / "anvil",
    ):
        if candidate.exists():
            return candidate
    found = shutil.which("anvil")
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        return "result" in requests.post(url, json=body, timeout=1).json()
    except (requests.RequestException, ValueError):
        return False


def start_anvil(binary: Path, attempts: int = 3) -> tuple[subprocess.Popen, str]:
    """Starts anvil on a free loopback port; retries when another process took the port first."""
    for _ in range(attempts - 1):
        try:
            return _start_once(binary)
        except PortTaken:
            continue
    return _start_once(binary)


class PortTaken(RuntimeError):
    """anvil exited at start, most likely because the port was taken between probe and bind."""


def _start_once(binary: Path, timeout: float = 30.0) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", str(port), "--silent", "--balance", "1000000"],
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
    stop_anvil(proc)
    raise RuntimeError(f"anvil did not answer at {url} within {timeout:.0f} s")


def stop_anvil(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()


@pytest.fixture(scope="session")
def anvil():
    """Yields the RPC URL of a fresh anvil node for the test session, and stops it afterwards."""
    binary = anvil_binary()
    if binary is None:
        pytest.skip("anvil is not installed: run `npm ci` in the repository root")
    proc, url = start_anvil(binary)
    try:
        yield url
    finally:
        stop_anvil(proc)

"""Fixtures for the storage integration tests."""

import socket

import pytest

from tests.s3server import s3_server  # noqa: F401  (a fixture, used by name)


@pytest.fixture
def unused_tcp_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

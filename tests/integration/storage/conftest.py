"""Fixtures for the storage integration tests (``s3_server`` comes from ``tests.s3server``)."""

import socket

import pytest


@pytest.fixture
def unused_tcp_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

"""Shared fixtures: the real servers the integration tests start (S3 on loopback, anvil)."""

pytest_plugins = ["tests.s3server", "tests.anvil"]

"""Shared fixtures: the embedded defaults and the real servers the tests start
(S3 on loopback, anvil, a Prefect devnet)."""

pytest_plugins = ["tests.embedded", "tests.s3server", "tests.anvil"]

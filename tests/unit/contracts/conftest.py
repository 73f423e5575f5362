from tests.unit.contracts.fixtures import bahen, chain, parties  # noqa: F401

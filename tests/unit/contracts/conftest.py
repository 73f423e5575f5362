from tests.unit.contracts.fixtures import bahen, chain, deployment, node, parties  # noqa: F401

from tests.unit.contracts.fixtures import bahen, chain, deployment, node, parties, slack  # noqa: F401

import pytest

from contracts.chain import Chain
from tests.anvil import anvil  # noqa: F401
from tests.unit.contracts.fixtures import bahen, chain, deployment, parties, slack  # noqa: F401


@pytest.fixture(scope="module")
def node(anvil):  # noqa: F811
    """The unit tests' `node`, on anvil: one node per session, fresh contracts per module, undone after each test."""
    return Chain.connect(anvil)

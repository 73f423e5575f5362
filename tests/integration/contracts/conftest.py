import pytest

from contracts.chain import Chain
from tests.anvil import anvil  # noqa: F401
from tests.unit.contracts.fixtures import bahen, parties  # noqa: F401


@pytest.fixture
def chain(anvil):  # noqa: F811
    """The unit tests' `chain`, on anvil: one node per session, fresh contracts per test."""
    return Chain.connect(anvil)

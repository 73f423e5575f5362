"""The dispute tests of the in-process EVM, run against a real anvil node."""

import pytest

from tests.unit.contracts.test_contracts_disputes import *

pytestmark = pytest.mark.integration

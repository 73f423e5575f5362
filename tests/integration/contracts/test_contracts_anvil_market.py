"""The market tests of the in-process EVM, run against a real anvil node."""

import pytest

from tests.unit.contracts.test_contracts_market import *

pytestmark = pytest.mark.integration

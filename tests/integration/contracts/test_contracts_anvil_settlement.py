"""The settlement tests of the in-process EVM, run against a real anvil node."""

import pytest

from tests.unit.contracts.test_contracts_settlement import *

pytestmark = pytest.mark.integration

import pytest

from bahen.network import connect
from bahen.settings import load_settings


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """A devnet on the embedded defaults in its own state directory (in-process EVM, local store)."""
    home = tmp_path_factory.mktemp("home")
    return connect(load_settings(home=home, scrypt_n=2**12))

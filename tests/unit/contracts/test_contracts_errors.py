"""Revert decoding and chain errors: known answers and round trips."""

import pickle
import sys

import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from contracts.abi import error_table
from contracts.chain import Chain
from contracts.errors import ChainError, ChainUnavailableError, ContractRevert, NoResolvers, decode_revert

UINT256 = st.integers(0, 2**256 - 1)


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_selectors_are_the_keccak_of_the_signature():
    # 0x08c379a0 is Error(string): the selector every EVM tool knows.
    assert _selector("Error(string)").hex() == "08c379a0"
    table = error_table()
    assert table[_selector("InsufficientEscrow(uint256,uint256)")].name == "InsufficientEscrow"
    assert table[_selector("NotWasp(address)")].name == "NotWasp"
    assert table[_selector("OwnableUnauthorizedAccount(address)")].name == "OwnableUnauthorizedAccount"
    assert table[_selector("StakeLocked(address,uint32)")].name == "StakeLocked"  # registry errors too


def test_custom_error_is_decoded_by_name():
    data = _selector("InsufficientEscrow(uint256,uint256)") + encode(["uint256", "uint256"], [5, 3])
    err = decode_revert("open_order", data)
    assert (err.action, err.error, err.args, err.fields) == (
        "open_order",
        "InsufficientEscrow",
        (5, 3),
        {"required": 5, "sent": 3},
    )
    assert str(err) == "open_order reverted: InsufficientEscrow(required=5, sent=3)"


def test_addresses_and_bytes_are_readable():
    address = "0x" + "ab" * 20
    data = _selector("ReportReplayed(address,bytes32)") + encode(["address", "bytes32"], [address, b"\x01" * 32])
    err = decode_revert("submit_report", data)
    assert err.fields["validator"] == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    assert str(err).endswith(f"digest=0x{'01' * 32})")


def test_string_panic_empty_and_unknown_reverts():
    assert (
        str(decode_revert("x", bytes.fromhex("08c379a0") + encode(["string"], ["no"])))
        == "x reverted: Error(reason=no)"
    )
    assert decode_revert("x", bytes.fromhex("4e487b71") + encode(["uint256"], [0x11])).fields == {"code": 0x11}
    assert str(decode_revert("x", b"")) == "x reverted: Reverted()"
    assert decode_revert("x", b"\xde\xad\xbe\xef").fields == {"data": "0xdeadbeef"}


@given(required=UINT256, available=UINT256)
def test_decoding_round_trips_any_values(required, available):
    data = _selector("EscrowExceeded(uint256,uint256)") + encode(["uint256", "uint256"], [required, available])
    err = decode_revert("add_task", data)
    assert err.fields == {"required": required, "available": available}


def test_revert_survives_pickling():
    err = ContractRevert("settle", "AlreadySettled", {"orderId": b"\x01" * 32})
    again = pickle.loads(pickle.dumps(err))
    assert (again.error, again.fields, str(again)) == (err.error, err.fields, str(err))


def test_no_resolvers_survives_pickling_with_its_deadline():
    err = NoResolvers("no staked validator outside order 0x01 may resolve the dispute of task 0", 1_700_000_000)
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.resolve_by) == (str(err), 1_700_000_000)


def test_unreachable_endpoint_names_the_url_and_what_to_start():
    with pytest.raises(ChainUnavailableError) as err:
        Chain.connect("http://127.0.0.1:9")
    assert "http://127.0.0.1:9" in str(err.value) and "anvil" in str(err.value)


def test_the_in_process_evm_without_the_devnet_extra_says_how_to_get_a_chain(monkeypatch):
    monkeypatch.setitem(sys.modules, "eth_tester", None)  # as on a host installed without the extra
    with pytest.raises(ChainError, match=r"devnet extra: pip install 'bahen\[devnet\]', or name .* BAHEN_CHAIN_RPC_URL"):
        Chain.in_process()

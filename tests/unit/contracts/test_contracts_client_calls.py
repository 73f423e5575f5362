"""Every call of the chain client checks what it is given and names itself when the chain refuses.

The calls are found by introspection, so a call added later is held to the same rules: a 32-byte
field given another length is named before anything is sent, and a call the contracts refuse (an
order nobody opened) raises a ContractRevert that names the call, so a user reads which of their
actions failed.
"""

import inspect

import pytest

from contracts.client import Bahen
from contracts.errors import ChainError, ContractRevert
from contracts.models import Ledger
from tests.unit.contracts.fixtures import ETHER, WINDOW, b32, commit_all, open_assigned, order_of

UNKNOWN = b"\x01" * 32  # an order id nobody opened
BYTES32 = ("order_id", "salt", "spec_hash", "root", "digest", "reasons_digest", "counter_digest", "report_digest")
CALLS = {name: fn for name, fn in inspect.getmembers(Bahen, inspect.isfunction)
         if name.isascii() and not name.startswith("_")}  # the client's API: tools may add attributes of their own


def _arguments(name: str, parties, **given) -> tuple[list, dict]:
    """Plausible arguments for the call ``name``, by parameter name, with ``given`` ones in their place."""
    plausible = {
        "acct": parties.stranger, "order_id": UNKNOWN, "task": 0, "kind": 0, "accepted": True, "uphold": True,
        "address": parties.stranger.address, "validator": parties.stranger.address, "role": "worker",
        "signature": b"\x00" * 65, "x25519_public": b"\x02" * 32, "declared_gflops": 1, "deadline": 0,
        "commit_window": 0,
    } | {field: b"\x03" * 32 for field in BYTES32[1:]}
    args, kwargs = [], {}
    for param in list(inspect.signature(CALLS[name]).parameters.values())[1:]:
        if param.default is not inspect.Parameter.empty and param.name not in given:
            continue
        value = given.get(param.name, plausible.get(param.name, 1))  # the rest are amounts
        (kwargs.__setitem__(param.name, value) if param.kind is param.KEYWORD_ONLY else args.append(value))
    return args, kwargs


def _call(bahen, name: str, parties, **given):
    args, kwargs = _arguments(name, parties, **given)
    return getattr(bahen, name)(*args, **kwargs)


@pytest.mark.parametrize(("name", "field"), [(n, f) for n, fn in CALLS.items() for f in BYTES32
                                             if f in inspect.signature(fn).parameters])
def test_a_32_byte_field_of_another_length_is_named_before_anything_is_sent(bahen, chain, parties, name, field):
    sent = chain.w3.eth.get_transaction_count(parties.stranger.address)
    with pytest.raises(ChainError, match=f"^{field} must be 32 bytes, got b'"):
        _call(bahen, name, parties, **{field: b"\x03" * 31})
    assert chain.w3.eth.get_transaction_count(parties.stranger.address) == sent


# each call the contracts refuse for an order nobody opened, and the error they refuse it with
REFUSED = {name: "UnknownOrder" for name in (
    "add_task", "add_validator", "cancel_order", "commit_proof", "draw_resolvers", "expire_dispute", "open_dispute",
    "replace_stalled", "submit_report", "vote_dispute")} | {
    "record_delivery": "OrderNotSettled", "settle": "OrderNotOpen", "record_verdict": "NotWasp", "void_verification": "NotWasp"}


@pytest.mark.parametrize("name", REFUSED)
def test_a_call_the_chain_refuses_for_an_order_nobody_opened_names_itself(bahen, parties, name):
    with pytest.raises(ContractRevert) as refused:
        _call(bahen, name, parties)
    assert (refused.value.action, refused.value.error) == (name, REFUSED[name]), str(refused.value)
    assert str(refused.value).startswith(f"{name} reverted: {REFUSED[name]}(")


def test_a_settlement_and_a_ledger_are_read_back_from_the_chain_for_their_order_alone(bahen, chain, parties):
    assert bahen.settlement_of(UNKNOWN) is None
    assert bahen.ledger(UNKNOWN) == Ledger(order_id="0x" + UNKNOWN.hex(), credits=[], slashes=[])
    orders = [order_of(f"client calls {n}") for n in range(2)]
    for n, (salt, oid) in enumerate(orders):
        open_assigned(bahen, parties, salt, tasks=1, validators=0, payment=ETHER // (4 + n))
        commit_all(bahen, parties, oid, tasks=1)
        bahen.record_verdict(parties.wasp, order_id=oid, task=0, accepted=True, reasons_digest=b32("why"))
        assert bahen.settlement_of(oid) is None  # open: nothing to read back yet
    chain.increase_time(WINDOW)
    settled = {oid: bahen.settle(parties.stranger, order_id=oid) for _, oid in orders}
    for _, oid in orders:  # a client whose process died after settling finds its own order's settlement
        assert bahen.settlement_of(oid) == settled[oid]
        assert bahen.ledger(oid).credits == settled[oid].credits
    assert settled[orders[0][1]] != settled[orders[1][1]]

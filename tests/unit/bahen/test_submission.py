"""The client's signature on its order runs: what it covers, and the runs its host refuses."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.identity import Identity
from privacy.signing import canonical_json, sign_digest
from bahen.orders import OrderAlreadyRunning, OrderBook, order_id_for
from bahen.spec import OrderSpec
from bahen.submission import ForgedOrderRun, UnsignedOrderRun, check_submission, sign_submission, submission_digest

# The well-known example key of the eth-account documentation.
CLIENT = Identity.from_secrets("client", bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"),
                               bytes(32))
STRANGER = Identity.generate("stranger")
SPEC = OrderSpec(dataset="digits", model="mlp", epochs=1)
SALT = "0x" + "5a" * 32
RUNS = [f"run-{i}" for i in range(32)]
CLIENT_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


def test_the_client_signs_keccak_of_the_canonical_json_of_kind_client_salt_and_spec():
    assert CLIENT.address == CLIENT_ADDRESS
    expected = keccak(b'{"client":"0x2c7536e3605d9c16a7a3d7b1898e529396a65c23","kind":"bahen.order-submission.v1",'
                      b'"salt":"0x' + b"5a" * 32 + b'","spec":' + canonical_json(SPEC.model_dump(mode="json")) + b"}")
    assert submission_digest(SPEC, SALT, CLIENT.address) == expected
    assert submission_digest(SPEC, SALT, CLIENT.address.lower()) == expected
    signature = sign_submission(CLIENT, SPEC, SALT)
    assert len(signature) == 132
    assert Account.recover_message(encode_defunct(primitive=expected), signature=bytes.fromhex(signature[2:])) == CLIENT_ADDRESS


def test_a_run_the_client_signed_is_taken_whether_or_not_unsigned_runs_are():
    signature = sign_submission(CLIENT, SPEC, SALT)
    for accept in (False, True):
        check_submission(SPEC, SALT, signature, CLIENT.address, accept_unsigned=accept)
        check_submission(SPEC, SALT, signature, CLIENT.address.lower(), accept_unsigned=accept)


@pytest.mark.parametrize("change", [
    {"epochs": 2}, {"lr": 0.5}, {"seed": 7}, {"budget_eth": 0.5}, {"validators": 3}, {"dataset": "mnist"},
])
def test_a_field_changed_after_signing_is_refused(change):
    signature = sign_submission(CLIENT, SPEC, SALT)
    with pytest.raises(ForgedOrderRun, match=f"not client {CLIENT.address}'s over the spec and salt"):
        check_submission(SPEC.model_copy(update=change), SALT, signature, CLIENT.address, accept_unsigned=True)


def test_another_salt_another_signer_or_another_client_is_refused():
    signature = sign_submission(CLIENT, SPEC, SALT)
    with pytest.raises(ForgedOrderRun, match="it recovers to 0x"):
        check_submission(SPEC, "0x" + "5b" * 32, signature, CLIENT.address, accept_unsigned=True)
    with pytest.raises(ForgedOrderRun, match=f"it recovers to {STRANGER.address}"):  # a stranger signs in its name
        forged = "0x" + sign_digest(STRANGER, submission_digest(SPEC, SALT, CLIENT.address)).hex()
        check_submission(SPEC, SALT, forged, CLIENT.address, accept_unsigned=True)
    with pytest.raises(ForgedOrderRun, match="it recovers to 0x"):  # or reuses its own run's signature
        check_submission(SPEC, SALT, sign_submission(STRANGER, SPEC, SALT), CLIENT.address, accept_unsigned=True)
    with pytest.raises(ForgedOrderRun, match=f"not client {STRANGER.address}'s"):  # the signature names its client
        check_submission(SPEC, SALT, signature, STRANGER.address, accept_unsigned=True)


def test_a_signed_run_whose_salt_was_left_to_the_run_is_refused():
    with pytest.raises(ForgedOrderRun, match="not client"):  # the order flow derives it from the run's id
        check_submission(SPEC, "0x" + "00" * 32, sign_submission(CLIENT, SPEC, SALT), CLIENT.address, accept_unsigned=True)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(0, 129), flip=st.integers(1, 15))
def test_any_changed_digit_of_the_signature_is_refused(position, flip):
    signature = sign_submission(CLIENT, SPEC, SALT)
    digits = signature[2:]
    changed = "0x" + digits[:position] + format(int(digits[position], 16) ^ flip, "x") + digits[position + 1:]
    with pytest.raises(ForgedOrderRun):
        check_submission(SPEC, SALT, changed, CLIENT.address, accept_unsigned=True)


def test_an_unsigned_run_is_refused_unless_the_host_accepts_them():
    with pytest.raises(UnsignedOrderRun, match=f"carries no signature of client {CLIENT.address}.*accept_unsigned_orders"):
        check_submission(SPEC, SALT, "", CLIENT.address, accept_unsigned=False)
    check_submission(SPEC, SALT, "", CLIENT.address, accept_unsigned=True)
    check_submission(SPEC, "", "", CLIENT.address, accept_unsigned=True)


def test_an_unsigned_run_naming_a_file_of_the_clients_host_is_refused(tmp_path):
    data, weights = tmp_path / "secret.csv", tmp_path / "start.safetensors"
    data.write_text("x,label\n1,0\n")
    weights.write_bytes(b"")
    on_file = SPEC.model_copy(update={"dataset_path": str(data)})
    with pytest.raises(UnsignedOrderRun, match=f"names dataset_path '{data}' on the client's host"):
        check_submission(on_file, SALT, "", CLIENT.address, accept_unsigned=True)
    both = on_file.model_copy(update={"initial_weights_path": str(weights)})
    with pytest.raises(UnsignedOrderRun, match=f"dataset_path '{data}' and initial_weights_path '{weights}'"):
        check_submission(both, SALT, "", CLIENT.address, accept_unsigned=True)
    check_submission(both, SALT, sign_submission(CLIENT, both, SALT), CLIENT.address, accept_unsigned=False)


def test_one_flow_run_places_an_order_and_a_copy_of_its_parameters_in_another_run_is_refused(tmp_path):
    book, order_id = OrderBook(tmp_path / "orders"), order_id_for(CLIENT.address, SALT)
    assert book.holder(order_id) is None
    book.claim(order_id, "run-a")
    book.claim(order_id, "run-a")  # the run retried
    with pytest.raises(OrderAlreadyRunning, match=f"order {order_id} is already placed by flow run run-a"):
        book.claim(order_id, "run-b")
    assert book.holder(order_id) == "run-a"  # what the SDK's wait follows when its run was the copy
    book.claim(order_id_for(CLIENT.address, "0x" + "5b" * 32), "run-b")
    assert sorted(p.name for p in (tmp_path / "orders").iterdir()) == sorted(
        [f"{order_id}.run", f"{order_id_for(CLIENT.address, '0x' + '5b' * 32)}.run"])
    assert book.list() == []  # claims are not records


def test_of_runs_claiming_one_order_at_once_exactly_one_wins(tmp_path):
    book, order_id = OrderBook(tmp_path / "orders"), order_id_for(CLIENT.address, SALT)

    def claim(run: str) -> bool:
        try:
            book.claim(order_id, run)
            return True
        except OrderAlreadyRunning:
            return False

    with ThreadPoolExecutor(8) as pool:
        won = [run for run, ok in zip(RUNS, pool.map(claim, RUNS)) if ok]
    assert len(won) == 1 and book.holder(order_id) == won[0]



def test_each_refusal_says_what_happened_and_what_to_do_in_full(tmp_path):
    """The messages a client's operator reads in the Prefect UI, word for word."""
    def refusal(spec, signature, accept):
        with pytest.raises((ForgedOrderRun, UnsignedOrderRun)) as refused:
            check_submission(spec, SALT, signature, CLIENT.address, accept_unsigned=accept)
        return str(refused.value)

    signature = sign_submission(CLIENT, SPEC, SALT)
    assert refusal(SPEC, signature[:-2] + "1d", True) == (
        "this order run's signature is not valid (the signature is not in canonical form (v 27/28, low s), so the "
        "contracts would reject it; ask the signer to sign again): nothing was opened or paid")
    changed = SPEC.model_copy(update={"epochs": 2})
    signer = Account.recover_message(encode_defunct(primitive=submission_digest(changed, SALT, CLIENT.address)),
                                     signature=bytes.fromhex(signature[2:]))
    assert refusal(changed, signature, True) == (
        f"this order run's signature is not client {CLIENT.address}'s over the spec and salt it carries (it recovers "
        f"to {signer}): either someone else made the run or its fields were changed after signing. Nothing was "
        "opened or paid; submit the order again with `bahen order submit` or the SDK")
    assert refusal(SPEC, "", False) == (
        f"this order run carries no signature of client {CLIENT.address}, as a run from the Prefect UI's form or from "
        "anyone else who can reach the Prefect server: nothing was opened or paid. Submit it with `bahen order submit` "
        "or the SDK, which sign it; to take unsigned runs from the UI, set accept_unsigned_orders: true in the "
        "client's config.yaml (anyone who can create runs on the server can then spend this client's money on "
        "sample datasets)")
    weights = tmp_path / "start.safetensors"
    weights.write_bytes(b"")
    assert refusal(SPEC.model_copy(update={"initial_weights_path": str(weights)}), "", True) == (
        f"an unsigned order run may train only on a sample dataset, and this one names initial_weights_path "
        f"'{weights}' on the client's host, which a stranger could have named to have it uploaded for the workers and "
        "auditors the order names: nothing was opened or paid. Submit an order on your own files with `bahen order "
        "submit` or the SDK, which sign it")

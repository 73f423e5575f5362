"""One adapter over the two chain backends: the in-process EVM (eth-tester + py-evm, the
``devnet`` extra) and any JSON-RPC endpoint (anvil locally). Everything that differs between them
lives here: how reverts arrive, how time moves, how blocks are mined."""

from __future__ import annotations

import ast
import random
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from eth_utils.exceptions import ValidationError as EvmValidationError
from web3 import EthereumTesterProvider, Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, ProviderConnectionError, TransactionNotFound, Web3RPCError
from web3.types import TxReceipt

from contracts.errors import (
    ChainError,
    ChainUnavailableError,
    ContractRevert,
    InsufficientFundsError,
    NonceTakenError,
    decode_revert,
)

PRIORITY_FEE = 10**9  # 1 gwei tip
GAS_HEADROOM = 1.2  # estimates are exact for the simulated state; leave room for state drift
# py-evm estimates gas by a binary search of ~13 executions; in process one simulation plus a
# fixed limit is an order of magnitude cheaper. The limit is about three times the largest bahen
# call (settling 64 tasks and 32 validators: 2.9-3.4 M gas) and a third of the block gas limit.
IN_PROCESS_GAS = 10_000_000
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
RECEIPT_TIMEOUT = 120  # seconds to wait for inclusion
# A node can answer for an account's nonce before it answers for the transaction that moved it (anvil
# does, under load): a transaction counts as replaced only once it has stayed unknown this long.
REPLACED_AFTER_S = 2.0
_REVERT_PREFIX = "execution reverted: "
# How nodes (anvil, geth, reth) refuse a transaction whose nonce another of the sender's transactions
# took after it was read: one party's runs of several orders at once each send from the same account.
NONCE_TAKEN = ("nonce too low", "replacement transaction underpriced")
NONCE_TRIES = 8  # each try simulates again on the state the other transaction left, with a fresh nonce


class Chain:
    """A web3 connection plus the devnet controls tests and `bahen up` need."""

    def __init__(self, w3: Web3, *, label: str, tester: Any = None,
                 refusals: tuple[type[Exception], ...] = (), reverts: tuple[type[Exception], ...] = ()):
        """``tester`` is the in-process EVM's ``EthereumTester``; ``refusals`` and ``reverts`` are the
        backend's own exceptions for a transaction it will not run (bad nonce, fees, funds) and for
        a reverted call, beside web3's."""
        self.w3 = w3
        self.label = label
        self._tester = tester
        self._refusals = (*refusals, EvmValidationError, Web3RPCError)
        self._reverts = (*reverts, ContractLogicError)
        self._chain_id: int | None = None
        self._view_sender: str | None = None
        # One sender's transactions go out one at a time (nonce, then inclusion); py-evm is not
        # thread-safe, so in process every request takes the lock too.
        self._lock = threading.RLock()

    @classmethod
    def in_process(cls) -> Chain:
        """A fresh in-process EVM with prefunded dev accounts; nothing to start (the ``devnet`` extra)."""
        try:
            from eth_tester import EthereumTester, PyEVMBackend
            from eth_tester.exceptions import TransactionFailed, ValidationError
        except ImportError:
            raise ChainError("the in-process EVM comes with the devnet extra: pip install 'bahen[devnet]', or name a "
                             "chain's JSON-RPC endpoint with BAHEN_CHAIN_RPC_URL") from None
        tester = EthereumTester(PyEVMBackend())
        return cls(Web3(EthereumTesterProvider(tester)), label="in-process EVM", tester=tester,
                   refusals=(ValidationError,), reverts=(TransactionFailed,))

    @classmethod
    def connect(cls, rpc_url: str) -> Chain:
        """Connects to a JSON-RPC endpoint; raises ChainUnavailableError when nothing answers."""
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        chain = cls(w3, label=rpc_url)
        chain.block_number()  # fail now, with the URL, rather than at the first transaction
        return chain

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._rpc(lambda: self.w3.eth.chain_id)
        return self._chain_id

    def fund(self, address: str, wei: int) -> None:
        """Sends `wei` from the node's first prefunded dev account (devnets only)."""
        accounts = self._rpc(lambda: self.w3.eth.accounts)
        if not accounts:
            raise ChainError(f"{self.label} has no prefunded dev account; fund {address} from a wallet instead")
        tx = {"from": accounts[0], "to": Web3.to_checksum_address(address), "value": wei, "gas": 21_000}
        try:
            with self._lock:
                self._rpc(lambda: self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_transaction(tx)))
        except self._refusals as exc:
            raise ChainError(
                f"funding {address} with {wei} wei from {accounts[0]} on {self.label} failed: {exc}"
            ) from None

    def balance(self, address: str) -> int:
        return self._rpc(lambda: self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    def mine(self, blocks: int = 1) -> None:
        if self._tester is not None:
            with self._lock:
                self._tester.mine_blocks(blocks)
        else:
            self._devnet_rpc("anvil_mine", [blocks])

    def pause(self, seconds: float) -> None:
        """Sleeps ``seconds``, then has a devnet mine a block: it mines only on transactions, so its latest
        block's clock, which a caller waiting for a chain time reads, would stand still. A real chain's
        blocks come by themselves."""
        time.sleep(seconds)
        with suppress(ChainError):
            self.mine(1)

    def increase_time(self, seconds: int) -> None:
        """Moves the clock forward and mines a block carrying the new time (`seconds` after the latest)."""
        if self._tester is not None:
            with self._lock:
                # eth-tester mines the travelled-to block one second before the time it is given.
                self._tester.time_travel(self.now() + seconds + 1)
        else:  # the block's time itself: a span added to anvil's clock would take in any second its wall clock ticked
            self._devnet_rpc("evm_setNextBlockTimestamp", [self.now() + seconds])
            self._devnet_rpc("evm_mine", [])

    def now(self) -> int:
        """Timestamp of the latest block."""
        return self._rpc(lambda: self.w3.eth.get_block("latest")["timestamp"])

    def block_number(self) -> int:
        return self._rpc(lambda: self.w3.eth.block_number)

    def receipt(self, tx_hash: bytes) -> TxReceipt:
        """The receipt of a mined transaction."""
        return self._rpc(lambda: self.w3.eth.get_transaction_receipt(tx_hash))

    def block_hash(self, number: int) -> bytes:
        return bytes(self._rpc(lambda: self.w3.eth.get_block(number)["hash"]))

    def block_time(self, number: int) -> int:
        """Timestamp of block ``number``."""
        return self._rpc(lambda: self.w3.eth.get_block(number)["timestamp"])

    def first_block_since(self, timestamp: int) -> int:
        """The first block whose timestamp is ``timestamp`` or later (the next block to be mined when none
        is yet), found by bisection: a few dozen reads however long the chain."""
        low, high = 0, self.block_number() + 1
        while low < high:
            middle = (low + high) // 2
            if self.block_time(middle) < timestamp:
                low = middle + 1
            else:
                high = middle
        return low

    def call(self, fn: ContractFunction, action: str) -> Any:
        """Runs a view function; a revert becomes a decoded ContractRevert."""
        try:
            return self._rpc(lambda: fn.call({"from": self._sender_for_views()}))
        except self._reverts as exc:
            raise _revert(action, exc) from None

    def transact(self, acct: LocalAccount, fn: ContractFunction, action: str, *, value: int = 0) -> TxReceipt:
        """Simulates, then signs and sends a call with explicit gas and fees, and waits for it.

        The simulation surfaces reverts with their data on both backends, so a failing call
        raises ContractRevert before anything is sent. When another process of the same sender
        takes the nonce first, the call is prepared and sent again (:meth:`_fresh_nonce`).
        """
        return self._fresh_nonce(lambda: self.send_signed(
            acct, fn.build_transaction(self._prepare(acct, fn, action, value, fixed_gas=self._tester is not None)), action,
        ))

    def deploy(self, acct: LocalAccount, abi: list, bytecode: str, args: list, action: str) -> str:
        """Deploys a contract and returns its address."""
        ctor = self.w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args)
        return self._fresh_nonce(lambda: self.send_signed(
            acct, ctor.build_transaction(self._prepare(acct, ctor, action, 0, fixed_gas=False)), action,
        ))["contractAddress"]

    def _fresh_nonce(self, send: Callable[[], TxReceipt]) -> TxReceipt:
        """``send`` (prepare, sign, send, wait), again after a short random pause each time a node refuses
        it because another transaction of the sender took its nonce, up to ``NONCE_TRIES`` tries. A refused
        transaction was not run, and each try simulates on the state the other one left."""
        for attempt in range(1, NONCE_TRIES):
            try:
                with self._lock:
                    return send()
            except NonceTakenError:
                time.sleep(random.uniform(0, 0.05 * attempt))
        with self._lock:
            return send()

    def send_signed(self, acct: LocalAccount, tx: dict, action: str) -> TxReceipt:
        """Signs and sends a complete transaction; a mined failure raises ContractRevert."""
        raw = acct.sign_transaction(tx).raw_transaction
        try:
            tx_hash = self._rpc(lambda: self.w3.eth.send_raw_transaction(raw))
        except self._refusals as exc:
            raise self._refused(action, acct.address, tx.get("value", 0), exc) from None
        receipt = self._mined(tx_hash, acct.address, tx["nonce"], action)
        if receipt["status"] != 1:
            # The state changed between simulation and inclusion; the receipt has no revert data.
            raise ContractRevert(action, "RevertedWhenMined", {
                "tx_hash": "0x" + bytes(tx_hash).hex(),
                "reason": "another transaction changed the state first; read it again before retrying",
            })
        return receipt

    def _mined(self, tx_hash: bytes, sender: str, nonce: int, action: str) -> TxReceipt:
        """The receipt of a sent transaction once it is mined.

        Another process of the sender can send another transaction with the same nonce, at a higher fee,
        while this one waits in the node's pool: the node then replaces it, and it is never mined. When
        the sender's account stays past the nonce while the node knows neither this transaction nor its
        receipt for ``REPLACED_AFTER_S``, that happened, and nothing of it ran: :class:`NonceTakenError`,
        which :meth:`_fresh_nonce` answers by sending again.
        """
        def receipt() -> TxReceipt | None:
            try:
                return self._rpc(lambda: self.w3.eth.get_transaction_receipt(tx_hash))
            except TransactionNotFound:
                return None

        def known() -> bool:
            try:
                self._rpc(lambda: self.w3.eth.get_transaction(tx_hash))
                return True
            except TransactionNotFound:
                return False

        deadline, gone_since = time.monotonic() + RECEIPT_TIMEOUT, None
        while (mined := receipt()) is None:
            now = time.monotonic()
            if self._rpc(lambda: self.w3.eth.get_transaction_count(sender, "latest")) > nonce and not known():
                gone_since = gone_since or now
                if now - gone_since >= REPLACED_AFTER_S:
                    raise NonceTakenError(f"{action}: transaction 0x{bytes(tx_hash).hex()} of {sender} was replaced "
                                          f"by another with its nonce on {self.label}: another process acts for it")
            else:
                gone_since = None
            if now > deadline:
                raise ChainError(
                    f"{action}: transaction 0x{bytes(tx_hash).hex()} was not mined on {self.label} within "
                    f"{RECEIPT_TIMEOUT} s; check that the node is producing blocks, then look the hash up"
                )
            time.sleep(0.02)
        return mined

    def _prepare(self, acct: LocalAccount, call, action: str, value: int, *, fixed_gas: bool) -> dict:
        """Transaction fields with explicit gas: a gas estimate, or one simulation plus a fixed limit."""
        tx = {"from": acct.address, "value": value, **self._fee_fields(acct.address)}
        try:
            if fixed_gas:
                tx["gas"] = IN_PROCESS_GAS
                self._rpc(lambda: call.call(tx))
            else:
                estimate = self._rpc(lambda: call.estimate_gas({"from": acct.address, "value": value}))
                tx["gas"] = int(estimate * GAS_HEADROOM) + 10_000
        except self._reverts as exc:
            raise _revert(action, exc) from None
        except self._refusals as exc:
            raise self._refused(action, acct.address, value, exc) from None
        return tx

    def _refused(self, action: str, sender: str, value: int, exc: Exception) -> ChainError:
        """A node refused a transaction before running it; usually the sender cannot pay."""
        text = str(exc)
        if any(taken in text.lower() for taken in NONCE_TAKEN):
            return NonceTakenError(
                f"{action}: another transaction of {sender} took each nonce first on {self.label} ({NONCE_TRIES} tries): "
                "too many processes act for this party at once; run it again"
            )
        if "afford" in text or "nsufficient funds" in text:
            return InsufficientFundsError(
                f"{action}: {sender} holds {self.balance(sender)} wei on {self.label}, not enough for "
                f"{value} wei plus gas; fund the account and retry"
            )
        return ChainError(f"{action} was refused by {self.label}: {text}")

    def _devnet_rpc(self, method: str, params: list) -> Any:
        """A devnet-only method (anvil's); a node that lacks it is not a devnet."""
        response = self._rpc(lambda: self.w3.provider.make_request(method, params))
        if "error" in response:
            raise ChainError(
                f"{self.label} refused {method} ({response['error']}): "
                "mining and time travel need a devnet such as anvil"
            )
        return response.get("result")

    def _sender_for_views(self) -> str:
        """A funded sender for eth_call; naming one stops web3 asking for the accounts on every call."""
        if self._view_sender is None:
            accounts = self._rpc(lambda: self.w3.eth.accounts)
            self._view_sender = accounts[0] if accounts else ZERO_ADDRESS
        return self._view_sender

    def _fee_fields(self, sender: str) -> dict:
        base_fee = self._rpc(lambda: self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        return {
            "nonce": self._rpc(lambda: self.w3.eth.get_transaction_count(sender, "pending")),
            "maxFeePerGas": 2 * base_fee + PRIORITY_FEE,
            "maxPriorityFeePerGas": PRIORITY_FEE,
            "chainId": self.chain_id,
        }

    def _rpc(self, request):
        try:
            with self._lock if self._tester is not None else nullcontext():
                return request()
        except (requests.ConnectionError, ProviderConnectionError) as exc:
            raise ChainUnavailableError(self.label, type(exc).__name__) from None


def _revert(action: str, exc: Exception) -> ContractRevert:
    """Extracts revert data from either backend's exception and decodes it."""
    if isinstance(exc, ContractLogicError):
        data = exc.data if isinstance(exc.data, str) else None
        return decode_revert(action, bytes.fromhex(data[2:]) if data else None)
    message = exc.args[0] if exc.args else b""
    if isinstance(message, bytes):
        return decode_revert(action, message)
    # eth-tester reports `execution reverted: b'...'`, the repr of the revert data.
    text = str(message)
    if text.startswith(_REVERT_PREFIX) and text[len(_REVERT_PREFIX) :][:2] in ("b'", 'b"'):
        return decode_revert(action, ast.literal_eval(text[len(_REVERT_PREFIX) :]))
    return ContractRevert(action, "Reverted", {"reason": text})

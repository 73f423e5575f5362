"""Errors of the chain client: every one names what failed and what to do about it."""

from __future__ import annotations

from typing import Any

from eth_abi import decode
from eth_utils import to_checksum_address

from contracts.abi import error_table

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string), from require(cond, "reason")
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256): overflow, division by zero, ...


class ChainError(Exception):
    """Base of every chain failure a user can cause or fix."""


class ChainUnavailableError(ChainError):
    """The JSON-RPC endpoint does not answer."""

    def __init__(self, rpc_url: str, cause: str = ""):
        self.rpc_url = rpc_url
        detail = f" ({cause})" if cause else ""
        super().__init__(
            f"no EVM JSON-RPC endpoint answers at {rpc_url}{detail}: start one "
            f"(`bahen up`, or `npx anvil --host 127.0.0.1`) or point the chain rpc_url setting at a running node"
        )


class InsufficientFundsError(ChainError):
    """The sender cannot pay the value and gas of a transaction."""


class NonceTakenError(ChainError):
    """Another transaction of the same sender took the nonce first: another process acting for the same party."""


class ChallengeNotReady(ChainError):
    """A draw or a challenge seed derives from a block that does not exist yet."""


class NoResolvers(ChainError):
    """A dispute's draw found no eligible validator outside the order: it may be drawn again once one
    registers, or expired by anyone past ``resolve_by``, a resolution period after the first draw that
    found none."""

    def __init__(self, message: str, resolve_by: int):
        self.resolve_by = resolve_by
        super().__init__(message)

    def __reduce__(self):
        return (NoResolvers, (str(self), self.resolve_by))


class ContractRevert(ChainError):
    """A contract call reverted. `.error` is the custom error's name, `.args` its decoded values
    (in declaration order) and `.fields` the same values by parameter name."""

    def __init__(self, action: str, error: str, fields: dict[str, Any] | None = None):
        self.action = action
        self.error = error
        self.fields = dict(fields or {})
        super().__init__(*self.fields.values())

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={_show(v)}" for k, v in self.fields.items())
        return f"{self.action} reverted: {self.error}({shown})"

    def __reduce__(self):
        return (ContractRevert, (self.action, self.error, self.fields))


def decode_revert(action: str, data: bytes | None) -> ContractRevert:
    """Turns raw revert data into a ContractRevert, using every custom error in the artifacts."""
    if not data or len(data) < 4:
        return ContractRevert(action, "Reverted")
    selector, payload = bytes(data[:4]), bytes(data[4:])
    if selector == _ERROR_STRING:
        return ContractRevert(action, "Error", {"reason": decode(["string"], payload)[0]})
    if selector == _PANIC:
        return ContractRevert(action, "Panic", {"code": decode(["uint256"], payload)[0]})
    spec = error_table().get(selector)
    if spec is None:
        return ContractRevert(action, "UnknownError", {"data": "0x" + bytes(data).hex()})
    values = decode(spec.types, payload)
    names = [p["name"] or f"arg{i}" for i, p in enumerate(spec.inputs)]
    return ContractRevert(action, spec.name, {n: _normalise(p, v) for n, p, v in zip(names, spec.inputs, values)})


def _normalise(param: dict, value: Any) -> Any:
    if param["type"] == "address":
        return to_checksum_address(value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)

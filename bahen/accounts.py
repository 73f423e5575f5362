"""A party's money on chain: what it holds, what it may collect, and collecting it with its own key.

Payments are pull-based: settlement and cancellation credit each party in the market contract, and
only the party can withdraw its credit. Stake leaves the registry in two steps: an unbond request
moves it to unbonding (refused while an order locks it), and once the registry's delay is over the
party withdraws it. :func:`collect` does both withdrawals that are due.
"""

from privacy.identity import Identity, Keystore
from pydantic import BaseModel, Field

from bahen.errors import BahenError
from bahen.network import Network


class NothingToCollect(BahenError):
    """The party has no credit and no unbonded stake that is due."""


class UnknownPartyError(BahenError):
    """The keystore holds no identity of that name, or several and none was named."""


class Balance(BaseModel):
    """One identity's funds as the chain holds them (wei)."""

    name: str
    address: str
    role: str = Field(description="worker, validator, or none when not registered")
    wallet_wei: int = Field(description="The account's own balance")
    credited_wei: int = Field(description="Credited by the market (payments, fees, refunds); `bahen withdraw` pays it out")
    stake_wei: int = Field(description="Bonded stake in the registry")
    unbonding_wei: int = Field(description="Stake on its way out; withdrawable from unbond_at")
    unbond_at: int = Field(description="Chain time (s) from which the unbonding stake may be withdrawn; 0 when none")
    locks: int = Field(description="Open orders that hold the stake: no unbonding while above zero")


class Collected(BaseModel):
    """What one :func:`collect` paid out to the party's account (wei)."""

    credited_wei: int
    unbonded_wei: int


def acting_party(keystore: Keystore, name: str | None) -> str:
    """The identity a command acts as: ``name``, or the keystore's only identity when none is named."""
    names = keystore.names()
    if name is None:
        if len(names) == 1:
            return names[0]
        if not names:
            raise UnknownPartyError(f"no identity in {keystore.root}: create one with `bahen keys new NAME`")
        raise UnknownPartyError(f"{keystore.root} holds {len(names)} identities ({', '.join(names)}): name one with --as")
    if name not in names:
        raise UnknownPartyError(f"no identity {name!r} in {keystore.root}; it holds {', '.join(names) or 'none'}")
    return name


def balance_of(net: Network, name: str) -> Balance:
    """``name``'s wallet, market credit, stake and unbonding, read from the chain."""
    address = net.keystore.public(name).address
    member = net.market.member(address)
    return Balance(
        name=name, address=address, role=member.role, wallet_wei=net.chain.balance(address),
        credited_wei=net.market.pending(address), stake_wei=member.stake, unbonding_wei=member.unbonding,
        unbond_at=member.unbond_at if member.unbonding else 0, locks=member.locks,
    )


def collect(net: Network, party: Identity) -> Collected:
    """Withdraw ``party``'s market credit and its unbonded stake once due, each only when there is some.

    Raises :class:`NothingToCollect` (saying when unbonding stake falls due) when neither pays.
    """
    balance = balance_of(net, party.name)
    due = balance.unbonding_wei and net.chain.now() >= balance.unbond_at
    if not balance.credited_wei and not due:
        later = (f"; {balance.unbonding_wei / 1e18:.6f} ETH of stake unbonds at chain time {balance.unbond_at}"
                 if balance.unbonding_wei else "")
        raise NothingToCollect(f"{party.name} ({party.address}) has nothing to withdraw now{later}")
    credited = net.market.withdraw(party.account) if balance.credited_wei else 0
    unbonded = net.market.withdraw_unbonded(party.account) if due else 0
    return Collected(credited_wei=credited, unbonded_wei=unbonded)


def unbond(net: Network, party: Identity, amount_wei: int) -> int:
    """Start unbonding ``amount_wei`` of ``party``'s stake; the chain time from which it may be withdrawn."""
    balance = balance_of(net, party.name)
    if balance.locks:
        raise BahenError(f"{party.name}'s stake is held by {balance.locks} open order(s): unbond after they settle")
    if not 0 < amount_wei <= balance.stake_wei:
        raise BahenError(f"{party.name} can unbond between 1 wei and its stake of {balance.stake_wei / 1e18:.6f} ETH, "
                         f"not {amount_wei / 1e18:.6f} ETH")
    net.market.request_unbond(party.account, amount=amount_wei)
    return net.market.member(party.address).unbond_at

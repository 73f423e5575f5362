"""Typed parameters, addresses and views of the bahen contracts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OrderStatus = Literal["none", "open", "settled", "cancelled"]
VerdictName = Literal["none", "accepted", "rejected"]
RoleName = Literal["none", "worker", "validator"]


class ChainParams(BaseModel):
    """Economic parameters fixed at deployment."""

    stake_wei_per_gflop: int = Field(10**13, ge=0, description="stake a worker holds per declared GFLOP/s")
    min_validator_stake: int = Field(10**17, ge=0, description="least stake of a validator, in wei")
    unbonding_delay: int = Field(7 * 24 * 3600, ge=0, description="seconds between unbond request and withdrawal")
    slash_bps: int = Field(5_000, ge=0, le=10_000, description="share of a rejected worker's stake slashed")
    treasury_bps: int = Field(2_000, ge=0, le=10_000, description="share of slashed stake sent to the treasury")


class Addresses(BaseModel):
    """Where a deployment lives; stored in the config by `bahen chain deploy`."""

    model_config = ConfigDict(frozen=True)

    chain_id: int
    staking: str
    market: str


class TaskView(BaseModel):
    task: int
    worker: str
    payment: int
    commit_block: int = Field(description="block of the proof commitment; 0 before it")
    root: str = Field(description="committed Merkle root, 0x-hex")
    verdict: VerdictName
    reasons_digest: str


class ValidatorView(BaseModel):
    validator: str
    fee: int
    reported: bool


class OrderView(BaseModel):
    """An order as the market stores it."""

    order_id: str
    client: str
    spec_hash: str
    escrow: int
    allocated: int
    deadline: int
    status: OrderStatus
    commits: int
    verdicts: int
    tasks: list[TaskView]
    validators: list[ValidatorView]


class MemberView(BaseModel):
    """A staker as the registry stores it."""

    address: str
    role: RoleName
    x25519_public: str
    declared_gflops: int
    stake: int
    unbonding: int
    unbond_at: int
    locks: int
    eligible: bool = Field(description="may be assigned now: registered, with at least the stake its role requires")


class Settlement(BaseModel):
    """What one settlement credited, read from its receipt's events."""

    order_id: str
    payouts: dict[str, int] = Field(description="accepted workers and reporting validators: wei credited")
    slashed: dict[str, int] = Field(description="rejected workers: wei of stake slashed")
    refund: int = Field(description="unspent escrow credited back to the client")
    slash_to_client: int
    slash_to_treasury: int
    tx_hash: str
    gas_used: int

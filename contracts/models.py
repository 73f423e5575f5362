"""Typed parameters, addresses and views of the bahen contracts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OrderStatus = Literal["none", "open", "settled", "cancelled"]
VerdictName = Literal["none", "accepted", "rejected"]
RoleName = Literal["none", "worker", "validator"]


DisputeStatus = Literal["none", "drawing", "voting", "upheld", "dismissed", "expired"]
CreditKind = Literal[
    "task payment", "validator fee", "refund", "bounty", "treasury", "resolver fee", "bond returned", "bond forfeited"
]


class ChainParams(BaseModel):
    """Economic parameters fixed at deployment (`contracts.economics.chain_params` reads them, with
    where each number comes from, from contracts/economics.yaml)."""

    stake_wei_per_gflop: int = Field(ge=0, description="stake a worker holds per declared GFLOP/s")
    min_validator_stake: int = Field(ge=0, description="least stake of a validator, in wei")
    unbonding_delay: int = Field(
        ge=0, description="seconds between unbond request and withdrawal; longer than a dispute can take"
    )
    slash_bps: int = Field(ge=0, le=10_000, description="share of a faulty member's stake slashed")
    bounty_bps: int = Field(
        ge=0, le=10_000, description="share of a slash credited to whoever proved the fault; the rest to the treasury"
    )
    stake_coverage_bps: int = Field(
        ge=0, lt=2**32, description="least worker stake per wei of one task's payment, in basis points"
    )
    dispute_window: int = Field(ge=0, lt=2**64, description="seconds after a verdict during which it may be disputed")
    resolution_period: int = Field(ge=0, lt=2**64, description="seconds the drawn resolvers have to vote")
    resolver_count: int = Field(ge=1, le=15, description="validators drawn to re-verify a disputed task (the first "
                                "dispute; each later one doubles it, at most 15)")
    dispute_bond: int = Field(ge=0, description="wei the first disputer of a task locks; later ones in proportion to "
                              "their panel of resolvers")
    resolver_fee: int = Field(
        ge=0, description="wei each resolver voting with the majority earns from the losing side's bond"
    )

    def market_tuple(self) -> tuple:
        """The market constructor's Params struct, in field order."""
        return (
            self.slash_bps, self.bounty_bps, self.stake_coverage_bps, self.resolver_count, self.dispute_window,
            self.resolution_period, self.dispute_bond, self.resolver_fee,
        )


class Addresses(BaseModel):
    """Where a deployment lives; stored in the config by `bahen chain deploy`."""

    model_config = ConfigDict(frozen=True)

    chain_id: int
    staking: str
    market: str


class TaskView(BaseModel):
    task: int
    worker: str = Field(description="the drawn worker (zero address until drawn, or after a replacement)")
    payment: int
    commit_block: int = Field(description="block of the proof commitment; 0 before it")
    root: str = Field(description="committed Merkle root, 0x-hex")
    verdict: VerdictName
    verdict_at: int = Field(description="timestamp of the verdict (0 before it); final a dispute window later")
    reasons_digest: str
    prover: str = Field(description="a disputer whose dispute was upheld (zero address if none)")
    draw_block: int = Field(description="the worker derives from the hash of the block after this one")
    commit_by: int = Field(description="timestamp past which an uncommitted worker may be replaced (0 undrawn)")
    disputes: int = Field(description="disputes opened on its verdict so far: the next draws 2^disputes times the "
                          "first panel of resolvers (at most 15), and bonds in proportion")
    verifier: str = Field(description="the validator whose verification of the task is on chain (zero address before it)")
    verify_by: int = Field(description="timestamp past which the committed task, still unverified, may have the order's "
                           "verifier replaced (0 before the commitment); once verified, the end of its scoring window, "
                           "past which Wasp may void a verification it cannot judge with")

    @property
    def wasp_verdict(self) -> VerdictName:
        """The verdict Wasp recorded (the one its reasons digest signs): the chain's, or its opposite once an
        upheld dispute overturned it (a prover is set)."""
        if int(self.prover, 16) == 0:
            return self.verdict
        return "rejected" if self.verdict == "accepted" else "accepted"


class ValidatorView(BaseModel):
    validator: str = Field(description="the drawn validator (zero address until drawn)")
    fee: int
    reported: bool
    overturned: bool = Field(description="signed a verification that a dispute overturned: no fee")
    draw_block: int = Field(description="the validator derives from the hash of the block after this one")


class Draw(BaseModel):
    """What one ``draw`` call assigned."""

    workers: dict[int, str] = Field(description="task index to the worker drawn for it")
    validators: list[str] = Field(description="validators drawn, in slot order")
    reanchored: int = Field(description="slots whose seed block had aged out: drawn by the next call")


class DisputeView(BaseModel):
    """The latest dispute of one task's verdict."""

    disputer: str
    status: DisputeStatus
    claim_accepted: bool = Field(description="the verdict the disputer says is right")
    votes_uphold: int
    votes_dismiss: int
    anchor_block: int
    resolve_by: int
    closed_at: int = Field(description="when it closed (0 while open): a verdict it left standing may be disputed "
                           "again, by another member, for a dispute window from here")
    bond: int
    counter_digest: str
    case_digest: str = Field(description="SHA-256 of the case the disputer handed its resolvers (zeros until it does)")
    resolvers: list[str]

    @property
    def case_recorded(self) -> bool:
        """Whether the disputer has recorded the case it hands its resolvers."""
        return int(self.case_digest, 16) != 0


class CreditEvent(BaseModel):
    """One credit of an order (a `Credited` event)."""

    account: str
    amount: int
    kind: CreditKind


class SlashEvent(BaseModel):
    """One slash of an order (a `Slashed` event): the debit of a member's stake and where it went."""

    member: str
    amount: int
    bounty: int
    to_treasury: int


class OrderView(BaseModel):
    """An order as the market stores it."""

    order_id: str
    client: str
    spec_hash: str
    escrow: int
    allocated: int
    deadline: int
    commit_window: int = Field(description="seconds a drawn worker has to commit its proof, and the verifier to verify it")
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
    credits: list[CreditEvent] = Field(description="every credit the settlement made, bounties and treasury included")
    tx_hash: str
    gas_used: int


class Ledger(BaseModel):
    """Every credit and debit of an order over its life, from the chain's events."""

    order_id: str
    credits: list[CreditEvent]
    slashes: list[SlashEvent]

    def total(self, kind: str) -> int:
        return sum(c.amount for c in self.credits if c.kind == kind)

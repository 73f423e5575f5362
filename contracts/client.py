"""Typed Python client of the bahen contracts: staking, orders, proofs, verdicts, settlement."""

from __future__ import annotations

from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from contracts.abi import load_artifact
from contracts.chain import Chain
from contracts.errors import ChainError, ChallengeNotReady, NoResolvers
from contracts.models import (
    Addresses,
    ChainParams,
    CreditEvent,
    DisputeView,
    Draw,
    Ledger,
    MemberView,
    OrderView,
    Settlement,
    SlashEvent,
    TaskView,
    ValidatorView,
)

STATUSES = ("none", "open", "settled", "cancelled")
VERDICTS = ("none", "accepted", "rejected")
ROLES = ("none", "worker", "validator")
DISPUTE_STATUSES = ("none", "drawing", "voting", "upheld", "dismissed", "expired")
CREDITS = (
    "task payment", "validator fee", "refund", "bounty", "treasury", "resolver fee", "bond returned", "bond forfeited"
)
REPORT_KINDS = {0: "verification", 1: "performance"}


ZERO_ADDRESS = "0x" + "00" * 20


class UnknownOrderError(ChainError):
    """The market has no order with this id."""


def order_id_of(client: str, salt: bytes) -> bytes:
    """The id of the order ``client`` opens with ``salt``: keccak256(abi.encode(client, salt)), as the
    market derives it, so nobody else can open an order under it first."""
    return keccak(encode(["address", "bytes32"], [_addr(client), _b32("salt", salt)]))


class Bahen:
    """The deployed StakingRegistry + BahenMarket pair on one chain."""

    def __init__(self, chain: Chain, addresses: Addresses):
        self.chain = chain
        self.addresses = addresses
        w3 = chain.w3
        self.staking = w3.eth.contract(address=addresses.staking, abi=load_artifact("StakingRegistry").abi)
        self.market = w3.eth.contract(address=addresses.market, abi=load_artifact("BahenMarket").abi)

    @classmethod
    def deploy(cls, chain: Chain, deployer: LocalAccount, *, wasp: str, treasury: str, params: ChainParams) -> Bahen:
        """Deploys the registry and the market, and binds the registry to the market."""
        registry, market = load_artifact("StakingRegistry"), load_artifact("BahenMarket")
        registry_args = [
            params.stake_wei_per_gflop,
            params.min_validator_stake,
            params.unbonding_delay,
            deployer.address,
        ]
        staking = chain.deploy(deployer, registry.abi, registry.bytecode, registry_args, "deploy StakingRegistry")
        market_args = [staking, _addr(wasp), _addr(treasury), params.market_tuple(), deployer.address]
        market_address = chain.deploy(deployer, market.abi, market.bytecode, market_args, "deploy BahenMarket")
        bahen = cls(chain, Addresses(chain_id=chain.chain_id, staking=staking, market=market_address))
        chain.transact(deployer, bahen.staking.functions.bindMarket(market_address), "bind_market")
        return bahen

    @classmethod
    def attach(cls, chain: Chain, addresses: Addresses) -> Bahen:
        """Uses an existing deployment; fails clearly when the chain or the code does not match."""
        if addresses.chain_id != chain.chain_id:
            raise ChainError(
                f"the configured bahen contracts are on chain {addresses.chain_id} but {chain.label} is chain "
                f"{chain.chain_id}: point rpc_url at the right node or run `bahen chain deploy`"
            )
        for name, address in (("StakingRegistry", addresses.staking), ("BahenMarket", addresses.market)):
            if not chain.w3.eth.get_code(address):
                raise ChainError(f"no {name} code at {address} on {chain.label}: run `bahen chain deploy`")
        return cls(chain, addresses)

    def params(self) -> ChainParams:
        """The economic parameters the contracts were deployed with."""
        s = self.staking.functions
        market = self.chain.call(self.market.functions.params(), "params")
        names = ("slash_bps", "bounty_bps", "stake_coverage_bps", "resolver_count", "dispute_window",
                 "resolution_period", "dispute_bond", "resolver_fee")
        return ChainParams(
            stake_wei_per_gflop=self.chain.call(s.stakeWeiPerGflop(), "stakeWeiPerGflop"),
            min_validator_stake=self.chain.call(s.minValidatorStake(), "minValidatorStake"),
            unbonding_delay=self.chain.call(s.unbondingDelay(), "unbondingDelay"),
            **dict(zip(names, market)),
        )

    # staking

    def register_worker(self, acct: LocalAccount, *, x25519_public: bytes, declared_gflops: int, stake: int) -> str:
        """Stakes `stake` wei for a worker declaring `declared_gflops`; at least `required_stake` of it."""
        fn = self.staking.functions.registerWorker(_b32("x25519_public", x25519_public), declared_gflops)
        return self._send(acct, fn, "register_worker", value=stake)

    def register_validator(self, acct: LocalAccount, *, x25519_public: bytes, stake: int) -> str:
        """Stakes `stake` wei (at least `min_validator_stake`) for a validator."""
        fn = self.staking.functions.registerValidator(_b32("x25519_public", x25519_public))
        return self._send(acct, fn, "register_validator", value=stake)

    def add_stake(self, acct: LocalAccount, *, amount: int) -> str:
        """Adds stake to a registered member, e.g. to become eligible again after a slash."""
        return self._send(acct, self.staking.functions.addStake(), "add_stake", value=amount)

    def request_unbond(self, acct: LocalAccount, *, amount: int) -> str:
        """Starts the unbonding delay for `amount` of the caller's stake (refused while it is locked)."""
        return self._send(acct, self.staking.functions.requestUnbond(amount), "request_unbond")

    def withdraw_unbonded(self, acct: LocalAccount) -> int:
        """Pays out unbonded stake once the delay is over; returns the wei sent."""
        receipt = self.chain.transact(acct, self.staking.functions.withdrawUnbonded(), "withdraw_unbonded")
        events = self.staking.events.UnbondedWithdrawn().process_receipt(receipt, errors=DISCARD)
        return sum(e["args"]["amount"] for e in events)

    def required_stake(self, declared_gflops: int) -> int:
        """Least stake, in wei, of a worker declaring `declared_gflops`."""
        return self.chain.call(self.staking.functions.requiredStake(declared_gflops), "required_stake")

    def stake_of(self, address: str) -> int:
        """Bonded stake of `address` (unbonding stake excluded)."""
        return self.member(address).stake

    def member(self, address: str) -> MemberView:
        """A staker's record, and whether the market would accept it for assignment now."""
        member, s = _addr(address), self.staking.functions
        m = self.chain.call(s.memberOf(member), "member")
        role = ROLES[m[0]]
        check = {"worker": s.isEligibleWorker, "validator": s.isEligibleValidator}.get(role)
        return MemberView(
            address=member,
            role=role,
            x25519_public=_hex(m[1]),
            declared_gflops=m[2],
            unbond_at=m[3],
            locks=m[4],
            stake=m[5],
            unbonding=m[6],
            eligible=check is not None and self.chain.call(check(member), "member"),
        )

    def members(self, role: str) -> list[MemberView]:
        """Every registered ``worker`` or ``validator``, eligible or not, in registration order."""
        listing = {"worker": self.staking.functions.workers, "validator": self.staking.functions.validators}[role]
        return [self.member(address) for address in self.chain.call(listing(), f"{role}s")]

    # orders

    def open_order(
        self,
        acct: LocalAccount,
        *,
        salt: bytes,
        spec_hash: bytes,
        escrow: int,
        deadline: int,
        commit_window: int,
        fee_estimate: int | None = None,
    ) -> bytes:
        """Opens the order :func:`order_id_of` (``acct``, ``salt``) with ``escrow`` wei, which must cover
        ``fee_estimate`` (default: all of it); a drawn worker has ``commit_window`` seconds to commit its
        proof. Returns the order id."""
        fee = escrow if fee_estimate is None else fee_estimate
        fn = self.market.functions.openOrder(_b32("salt", salt), _b32("spec_hash", spec_hash), fee, deadline, commit_window)
        self._send(acct, fn, "open_order", value=escrow)
        return order_id_of(acct.address, salt)

    def add_task(self, acct: LocalAccount, *, order_id: bytes, payment: int) -> int:
        """Adds the order's next task, reserving ``payment`` of the escrow; returns its index. Its worker
        is drawn by :meth:`draw`."""
        receipt = self.chain.transact(acct, self.market.functions.addTask(_b32("order_id", order_id), payment), "add_task")
        (added,) = self.market.events.TaskAdded().process_receipt(receipt, errors=DISCARD)
        return added["args"]["task"]

    def add_validator(self, acct: LocalAccount, *, order_id: bytes, fee: int) -> int:
        """Adds a validator slot, reserving ``fee`` of the escrow; returns its index. Its validator is
        drawn by :meth:`draw`."""
        fn = self.market.functions.addValidator(_b32("order_id", order_id), fee)
        receipt = self.chain.transact(acct, fn, "add_validator")
        (added,) = self.market.events.ValidatorSlotAdded().process_receipt(receipt, errors=DISCARD)
        return added["args"]["slot"]

    def draw(self, acct: LocalAccount, *, order_id: bytes) -> Draw:
        """Draws a member for every task and validator slot that has none (any sender); on a devnet,
        mines the seed blocks first if needed. A slot whose seed block aged out is re-anchored and left
        for the next call (:attr:`Draw.reanchored`)."""
        oid = _b32("order_id", order_id)
        order = self.order(oid)
        anchors = [t.draw_block for t in order.tasks if t.worker == ZERO_ADDRESS]
        anchors += [v.draw_block for v in order.validators if v.validator == ZERO_ADDRESS]
        missing = max(anchors, default=0) + 2 - self.chain.block_number()
        if missing > 0:
            try:
                self.chain.mine(missing)
            except ChainError:
                raise ChallengeNotReady(
                    f"the members of order {_hex(oid)} derive from block {max(anchors) + 1}: "
                    f"draw again once block {max(anchors) + 2} exists"
                ) from None
        receipt = self.chain.transact(acct, self.market.functions.draw(oid), "draw")
        events = self.market.events
        return Draw(
            workers={e["args"]["task"]: e["args"]["worker"] for e in events.TaskAssigned().process_receipt(receipt, errors=DISCARD)},
            validators=[e["args"]["validator"] for e in events.ValidatorAssigned().process_receipt(receipt, errors=DISCARD)],
            reanchored=len(events.DrawReanchored().process_receipt(receipt, errors=DISCARD)),
        )

    def replace_stalled(self, acct: LocalAccount, *, order_id: bytes, task: int) -> str:
        """Replaces whoever stalls a task (any sender): its worker when it has not committed its proof by
        the task's ``commit_by``, else the order's verifier when the committed task has no verification
        on chain by its ``verify_by``. Neither is slashed; each stays bound until the order closes, and
        :meth:`draw` picks the next one."""
        return self._send(acct, self.market.functions.replaceStalled(_b32("order_id", order_id), task), "replace_stalled")

    def cancel_order(self, acct: LocalAccount, *, order_id: bytes) -> str:
        """Credits the whole escrow back to the client.

        Allowed while no verdict is recorded, and either no proof is committed or the deadline passed.
        """
        return self._send(acct, self.market.functions.cancelOrder(_b32("order_id", order_id)), "cancel_order")

    def order(self, order_id: bytes) -> OrderView:
        """The stored order with its tasks and validators; UnknownOrderError if there is none."""
        oid = _b32("order_id", order_id)
        o = self.chain.call(self.market.functions.getOrder(oid), "order")
        if o[2] == 0:
            raise UnknownOrderError(
                f"order {_hex(oid)} does not exist on market {self.addresses.market}: "
                "check the order id and the chain config"
            )
        tasks = [self._task_view(oid, i) for i in range(o[3])]
        slots = self.chain.call(self.market.functions.getValidators(oid), "order")
        return OrderView(
            order_id=_hex(oid),
            client=o[0],
            deadline=o[1],
            status=STATUSES[o[2]],
            commits=o[4],
            verdicts=o[5],
            spec_hash=_hex(o[6]),
            escrow=o[7],
            allocated=o[8],
            commit_window=o[9],
            tasks=tasks,
            validators=[
                ValidatorView(validator=v[0], reported=v[1], overturned=v[2], fee=v[3], draw_block=v[4]) for v in slots
            ],
        )

    def _task_view(self, oid: bytes, task: int) -> TaskView:
        t = self.chain.call(self.market.functions.getTask(oid, task), "order")
        return TaskView(
            task=task,
            worker=t[0],
            verdict=VERDICTS[t[1]],
            commit_block=t[2],
            verdict_at=t[3],
            verifier=t[4],
            payment=t[5],
            root=_hex(t[6]),
            reasons_digest=_hex(t[7]),
            prover=t[8],
            draw_block=t[9],
            commit_by=t[10],
            disputes=t[11],
            verify_by=t[12],
        )

    # proofs, reports, verdicts

    def commit_proof(self, acct: LocalAccount, *, order_id: bytes, task: int, root: bytes) -> int:
        """Commits a proof's Merkle root; returns the block it was committed in."""
        fn = self.market.functions.commitProof(_b32("order_id", order_id), task, _b32("root", root))
        return self.chain.transact(acct, fn, "commit_proof")["blockNumber"]

    def challenge_seed(self, order_id: bytes, task: int) -> bytes:
        """keccak256(abi.encode(hash of the block after the commitment, order id, task)).

        That block did not exist when the worker committed, so the worker could not have known
        the seed; anyone can recompute it from public chain data.
        """
        oid = _b32("order_id", order_id)
        commit_block = self._task_view(oid, task).commit_block
        if commit_block == 0:
            raise ChallengeNotReady(f"task {task} of order {_hex(oid)} has no proof commitment yet: commit first")
        if self.chain.block_number() <= commit_block:
            raise ChallengeNotReady(
                f"challenge seed of order {_hex(oid)} task {task} is not yet available: it derives from block "
                f"{commit_block + 1}; wait for the next block (or mine one on a devnet)"
            )
        seed_block = self.chain.block_hash(commit_block + 1)
        return keccak(encode(["bytes32", "bytes32", "uint256"], [seed_block, oid, task]))

    def sign_report(self, acct: LocalAccount, *, order_id: bytes, task: int, kind: int, digest: bytes) -> bytes:
        """``acct``'s attestation of a report digest: an EIP-712 signature over Report(orderId, task, kind,
        digest) under this market's domain (name BahenMarket, version 1, chain id, market address), valid
        for this order, task, kind, chain and contract only."""
        domain = {"name": "BahenMarket", "version": "1", "chainId": self.chain.chain_id,
                  "verifyingContract": self.addresses.market}
        types = {"Report": [{"name": "orderId", "type": "bytes32"}, {"name": "task", "type": "uint256"},
                            {"name": "kind", "type": "uint8"}, {"name": "digest", "type": "bytes32"}]}
        message = {"orderId": _b32("order_id", order_id), "task": task, "kind": kind, "digest": _b32("digest", digest)}
        return bytes(acct.sign_typed_data(domain, types, message).signature)

    def submit_report(
        self, acct: LocalAccount, *, order_id: bytes, task: int, kind: int, digest: bytes, signature: bytes
    ) -> str:
        """Records a validator's report digest with its attestation (:meth:`sign_report`; kind 0 verification,
        from the order's verifier alone, the validator of its first slot; 1 performance, from any of its
        validators); any sender may relay it."""
        if kind not in REPORT_KINDS:
            raise ChainError(f"report kind {kind} is unknown: use 0 (verification) or 1 (performance)")
        fn = self.market.functions.submitReport(
            _b32("order_id", order_id), task, kind, _b32("digest", digest), signature
        )
        return self._send(acct, fn, "submit_report")

    def report_of(self, order_id: bytes, task: int, kind: int, validator: str) -> bytes:
        """The report digest a validator submitted for (task, kind); 32 zero bytes if none."""
        fn = self.market.functions.reportOf(_b32("order_id", order_id), task, kind, _addr(validator))
        return bytes(self.chain.call(fn, "report_of"))

    def record_verdict(
        self, acct: LocalAccount, *, order_id: bytes, task: int, accepted: bool, reasons_digest: bytes
    ) -> str:
        """Records Wasp's verdict on a task (only the holder of the Wasp role may)."""
        fn = self.market.functions.recordVerdict(
            _b32("order_id", order_id), task, accepted, _b32("reasons_digest", reasons_digest)
        )
        return self._send(acct, fn, "record_verdict")

    def record_delivery(self, acct: LocalAccount, *, order_id: bytes, task: int, digest: bytes) -> str:
        """Records, as one of the order's validators, the digest of its signed delivery of an accepted task's
        model key, once the order is settled (once per validator and task)."""
        fn = self.market.functions.recordDelivery(_b32("order_id", order_id), task, _b32("digest", digest))
        return self._send(acct, fn, "record_delivery")

    def delivery_of(self, order_id: bytes, task: int, validator: str) -> bytes:
        """The delivery digest a validator recorded for the task; 32 zero bytes if none."""
        fn = self.market.functions.deliveryOf(_b32("order_id", order_id), task, _addr(validator))
        return bytes(self.chain.call(fn, "delivery_of"))

    def verdict_recorder(self, order_id: bytes, task: int) -> str | None:
        """The account that recorded the task's verdict (the Wasp whose store folder names its audit case),
        read from the verdict's event; None while the task has no verdict."""
        oid = _b32("order_id", order_id)
        start = self._first_event_block(oid)
        if start is None:
            return None
        logs = self.market.events.VerdictRecorded().get_logs(
            from_block=start, argument_filters={"orderId": oid, "task": task})
        return None if not logs else self.chain.receipt(logs[0]["transactionHash"])["from"]

    def void_verification(self, acct: LocalAccount, *, order_id: bytes, task: int) -> str:
        """Voids, as Wasp, the task's verification it cannot judge with (attested, but its report not stored
        whole or of another task), past the task's ``verify_by`` with no verdict: the task is unverified again
        and a verifier still in the first slot replaced as a stalled one is; :meth:`draw` picks the next."""
        return self._send(acct, self.market.functions.voidVerification(_b32("order_id", order_id), task),
                          "void_verification")

    def is_wasp(self, address: str) -> bool:
        """Whether `address` holds the Wasp role (the only writer of verdicts)."""
        return self.chain.call(self.market.functions.isWasp(_addr(address)), "is_wasp")

    def set_wasp(self, acct: LocalAccount, *, account: str, holds: bool) -> str:
        """Lets ``account`` record verdicts, or stops it (the market's owner only)."""
        return self._send(acct, self.market.functions.setWasp(_addr(account), holds), "set_wasp")

    # disputes

    def dispute_bond(self, order_id: bytes, task: int) -> int:
        """The wei the next dispute of a task's verdict locks: the dispute bond in proportion to its panel of
        resolvers, the first panel doubled for each dispute before, at most 15 resolvers."""
        return self.chain.call(self.market.functions.disputeBondOf(_b32("order_id", order_id), task), "dispute_bond")

    def open_dispute(self, acct: LocalAccount, *, order_id: bytes, task: int, counter_digest: bytes, bond: int) -> str:
        """Disputes a task's verdict within its window, locking `bond` wei (exactly :meth:`dispute_bond`)."""
        fn = self.market.functions.openDispute(_b32("order_id", order_id), task, _b32("counter_digest", counter_digest))
        return self._send(acct, fn, "open_dispute", value=bond)

    def draw_resolvers(self, acct: LocalAccount, *, order_id: bytes, task: int) -> list[str]:
        """Draws the dispute's resolvers (any sender); on a devnet, mines the seed block first if needed.

        Returns the drawn validators; empty when the seed block had aged out and the draw re-anchored.
        Raises :class:`NoResolvers` when no eligible validator is outside the order (the chain records the
        first such draw: the dispute may be expired a resolution period later).
        """
        oid = _b32("order_id", order_id)
        # The seed block must exist before the call is simulated against the latest block.
        anchor = self.dispute(oid, task).anchor_block
        missing = anchor + 2 - self.chain.block_number()
        if missing > 0:
            try:
                self.chain.mine(missing)
            except ChainError:
                raise ChallengeNotReady(
                    f"the resolvers of order {_hex(oid)} task {task} derive from block {anchor + 1}: "
                    f"draw again once block {anchor + 2} exists"
                ) from None
        receipt = self.chain.transact(acct, self.market.functions.drawResolvers(oid, task), "draw_resolvers")
        if found := self.market.events.NoResolversFound().process_receipt(receipt, errors=DISCARD):
            resolve_by = found[0]["args"]["resolveBy"]
            raise NoResolvers(
                f"no staked validator outside order {_hex(oid)} may resolve the dispute of task {task} (every one is a "
                f"party to the order or disputed it): draw again once one registers; past {resolve_by} (unix time) "
                "anyone may expire the dispute, the verdict stands and the disputer's bond returns",
                resolve_by,
            )
        drawn = self.market.events.ResolversDrawn().process_receipt(receipt, errors=DISCARD)
        return list(drawn[0]["args"]["resolvers"]) if drawn else []

    def hand_over(self, acct: LocalAccount, *, order_id: bytes, task: int, case_digest: bytes) -> str:
        """The disputer records the SHA-256 of the case it hands its drawn resolvers: once, within the first
        half of the resolution period (:meth:`hand_by`)."""
        fn = self.market.functions.handOver(_b32("order_id", order_id), task, _b32("case_digest", case_digest))
        return self._send(acct, fn, "hand_over")

    def hand_by(self, dispute: DisputeView) -> int:
        """The last chain time at which the disputer of a drawn dispute may record its case: half the
        resolution period after the draw. After it, a resolver votes to dismiss a dispute with none."""
        period = self.params().resolution_period
        return dispute.resolve_by - period + period // 2

    def vote_dispute(self, acct: LocalAccount, *, order_id: bytes, task: int, uphold: bool, report_digest: bytes) -> str:
        """A drawn resolver's vote: `uphold` when its re-verification contradicts the verdict."""
        fn = self.market.functions.voteDispute(
            _b32("order_id", order_id), task, uphold, _b32("report_digest", report_digest)
        )
        return self._send(acct, fn, "vote_dispute")

    def expire_dispute(self, acct: LocalAccount, *, order_id: bytes, task: int) -> str:
        """Closes a dispute whose resolvers reached no majority in time (any sender)."""
        return self._send(acct, self.market.functions.expireDispute(_b32("order_id", order_id), task), "expire_dispute")

    def dispute(self, order_id: bytes, task: int) -> DisputeView:
        """The latest dispute of a task's verdict (status "none" when there is none)."""
        d = self.chain.call(self.market.functions.getDispute(_b32("order_id", order_id), task), "dispute")
        return DisputeView(
            disputer=d[0], status=DISPUTE_STATUSES[d[1]], claim_accepted=d[2], votes_uphold=d[3], votes_dismiss=d[4],
            anchor_block=d[5], resolve_by=d[6], closed_at=d[7], bond=d[8], counter_digest=_hex(d[9]),
            case_digest=_hex(d[10]), resolvers=list(d[11]),
        )

    def dispute_votes(self, order_id: bytes, task: int) -> dict[str, bool]:
        """The votes cast on the task's latest dispute, by resolver (True: uphold), from their events: those
        since its resolvers were drawn (a later dispute's draw needs two blocks after it opens, so no vote of
        an earlier dispute shares a block with it)."""
        oid = _b32("order_id", order_id)
        start = self._first_event_block(oid)
        if start is None:
            return {}
        filters = {"orderId": oid, "task": task}
        drawn = self.market.events.ResolversDrawn().get_logs(from_block=start, argument_filters=filters)
        if not drawn:
            return {}
        voted = self.market.events.DisputeVoted().get_logs(from_block=drawn[-1]["blockNumber"], argument_filters=filters)
        return {e["args"]["resolver"]: e["args"]["uphold"] for e in voted}

    def disputes_to_resolve(self, resolver: str) -> list[tuple[str, int]]:
        """(order id, task) of every dispute that drew `resolver` among its resolvers, is open for votes and
        has none from it yet. Only the draws of the last resolution period are read: a draw's voting
        closes a resolution period after its block, so a validator's scheduled look costs the same
        however long the chain."""
        address = _addr(resolver)
        since = self.chain.first_block_since(self.chain.now() - self.params().resolution_period)
        drawn = self.market.events.ResolversDrawn().get_logs(from_block=since)
        cases = dict.fromkeys((bytes(e["args"]["orderId"]), e["args"]["task"]) for e in drawn
                              if address in e["args"]["resolvers"])
        return [(_hex(oid), task) for oid, task in cases
                if (d := self.dispute(oid, task)).status == "voting" and address in d.resolvers
                and address not in self.dispute_votes(oid, task)]

    # money

    def settle(self, acct: LocalAccount, *, order_id: bytes) -> Settlement:
        """Credits every party of the order once; a second call reverts AlreadySettled."""
        oid = _b32("order_id", order_id)
        receipt = self.chain.transact(acct, self.market.functions.settle(oid), "settle")
        return self._settlement(oid, receipt)

    def settlement_of(self, order_id: bytes) -> Settlement | None:
        """The order's settlement as its transaction's events recorded it, or None if it is not settled.

        Read from the chain alone, so a client whose process died after settling can recover it.
        """
        oid = _b32("order_id", order_id)
        start = self._first_event_block(oid)
        if start is None:
            return None
        logs = self.market.events.OrderSettled().get_logs(from_block=start, argument_filters={"orderId": oid})
        if not logs:
            return None
        return self._settlement(oid, self.chain.receipt(logs[0]["transactionHash"]))

    def withdraw(self, acct: LocalAccount) -> int:
        """Pays out everything credited to the caller; returns the wei sent."""
        receipt = self.chain.transact(acct, self.market.functions.withdraw(), "withdraw")
        return sum(e["args"]["amount"] for e in self.market.events.Withdrawn().process_receipt(receipt, errors=DISCARD))

    def pending(self, address: str) -> int:
        """Wei credited to `address` and not yet withdrawn."""
        return self.chain.call(self.market.functions.pending(_addr(address)), "pending")

    def ledger(self, order_id: bytes) -> Ledger:
        """Every credit and slash of an order, from its events (disputes and settlement alike); empty
        for an order the market does not hold."""
        oid = _b32("order_id", order_id)
        start = self._first_event_block(oid)
        if start is None:
            return Ledger(order_id=_hex(oid), credits=[], slashes=[])
        events = self.market.events
        credited = events.Credited().get_logs(from_block=start, argument_filters={"orderId": oid})
        slashed = events.Slashed().get_logs(from_block=start, argument_filters={"orderId": oid})
        return Ledger(order_id=_hex(oid), credits=[_credit(e) for e in credited], slashes=[_slash(e) for e in slashed])

    def _first_event_block(self, oid: bytes) -> int | None:
        """The earliest block that can hold the order's credits, slashes and settlement, or None for an
        order the market does not hold; searching logs from the chain's first block instead costs a
        node (and the in-process EVM) time in proportion to the whole chain.

        The earliest draw block of the order's tasks and validator slots: a slot's draw block moves
        only while the slot is undrawn (or its worker uncommitted) and the order open, and every
        credit or slash comes after a slot that no longer moves (a task's verdict, a drawn validator)
        or ends the order (settlement, cancellation). An order with no slot yet searches from block 0.
        """
        try:
            view = self.order(oid)
        except UnknownOrderError:
            return None
        return min((slot.draw_block for slot in (*view.tasks, *view.validators)), default=0)

    def _settlement(self, oid: bytes, receipt: TxReceipt) -> Settlement:
        events = self.market.events
        credits = [_credit(e) for e in events.Credited().process_receipt(receipt, errors=DISCARD)]
        payouts: dict[str, int] = {}
        for c in credits:
            if c.kind in ("task payment", "validator fee"):
                payouts[c.account] = payouts.get(c.account, 0) + c.amount
        slashed: dict[str, int] = {}
        for e in events.Slashed().process_receipt(receipt, errors=DISCARD):
            slashed[e["args"]["member"]] = slashed.get(e["args"]["member"], 0) + e["args"]["amount"]
        (done,) = events.OrderSettled().process_receipt(receipt, errors=DISCARD)
        return Settlement(
            order_id=_hex(oid),
            payouts=payouts,
            slashed=slashed,
            refund=done["args"]["refund"],
            credits=credits,
            tx_hash=_hex(receipt["transactionHash"]),
            gas_used=receipt["gasUsed"],
        )

    def _send(self, acct: LocalAccount, fn, action: str, *, value: int = 0) -> str:
        return _hex(self.chain.transact(acct, fn, action, value=value)["transactionHash"])


def _credit(event) -> CreditEvent:
    args = event["args"]
    return CreditEvent(account=args["account"], amount=args["amount"], kind=CREDITS[args["kind"]])


def _slash(event) -> SlashEvent:
    args = event["args"]
    return SlashEvent(member=args["member"], amount=args["amount"], bounty=args["bounty"], to_treasury=args["toTreasury"])


def _b32(name: str, value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise ChainError(f"{name} must be 32 bytes, got {value!r:.80}")
    return bytes(value)


def _addr(address: str) -> str:
    if not Web3.is_address(address):
        raise ChainError(f"{address!r} is not an Ethereum address")
    return Web3.to_checksum_address(address)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()

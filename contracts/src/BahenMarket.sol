// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {StakingRegistry} from "./StakingRegistry.sol";

/// @title BahenMarket
/// @notice Order book with escrow, proof registry, disputes and settlement. A client escrows its
/// payment and opens tasks and validator slots, each with its price; the chain draws who takes each
/// (stake-weighted among eligible members that are no party to the order, seeded by a block that
/// did not exist when the slot was opened), so no client picks its workers or validators. Workers
/// commit proof roots, a worker that does not commit in time is replaced by the next draw,
/// validators' signed report digests are recorded (a task's verification only from the order's
/// verifier, the validator of its first slot, itself replaced by the next draw when it leaves a
/// committed task unverified past its window), the Wasp role (accounts the owner sets) records work
/// verdicts, and voids a verification it cannot judge with, which has the verifier replaced the same way.
/// A verdict becomes final once its dispute window has passed: within it, a staked member may
/// dispute it with a bond, and validators drawn on chain re-verify and vote; a dispute that leaves
/// it standing opens the window again for the members that have not disputed it. Settlement credits
/// pull payments: accepted work and reporting validators are paid, rejected workers are slashed
/// (a bounty to whoever proved the fraud, the rest to the treasury; never to the client), and the
/// rest of the escrow returns to the client.
contract BahenMarket is Ownable, ReentrancyGuard, EIP712 {
    bytes32 public constant REPORT_TYPEHASH = keccak256("Report(bytes32 orderId,uint256 task,uint8 kind,bytes32 digest)");
    uint256 public constant MAX_TASKS = 64;
    uint256 public constant MAX_VALIDATORS = 32;
    uint256 public constant MAX_RESOLVERS = 15;
    uint8 private constant VERIFICATION = 0;
    uint8 private constant WORKER_DRAW = 0;
    uint8 private constant VALIDATOR_DRAW = 1;
    // Members one slot's draw may find before it re-anchors to a later block: a draw leaves the
    // order's parties (and a panel the task's disputers) out before it starts, so its tries find
    // only the members drawn and, for a task, those short of the stake its payment needs.
    uint256 private constant DRAW_TRIES = 64;
    // Tries one `draw` call may spend over an order's tasks (and again over its validator slots),
    // which bounds its gas (about 32,000 a try that finds a member short of the stake); the tasks it
    // does not reach wait for the next call, which starts with them.
    uint256 private constant DRAW_BUDGET = 256;

    enum Status {
        None,
        Open,
        Settled,
        Cancelled
    }

    enum Verdict {
        None,
        Accepted,
        Rejected
    }

    enum DisputeStatus {
        None,
        Drawing,
        Voting,
        Upheld,
        Dismissed,
        Expired
    }

    /// @dev Why an account was credited; every credit of an order is one `Credited` event.
    enum Credit {
        TaskPayment,
        ValidatorFee,
        Refund,
        Bounty,
        Treasury,
        ResolverFee,
        BondReturned,
        BondForfeited
    }

    struct Params {
        uint16 slashBps; // share of a faulty member's stake slashed
        uint16 bountyBps; // share of a slash credited to whoever proved the fault
        uint32 stakeCoverageBps; // least stake of a worker per wei of one task's payment, in bps
        uint8 resolverCount; // validators drawn to resolve a task's first dispute (each later one doubles it, up to 15)
        uint64 disputeWindow; // seconds after a verdict during which it may be disputed
        uint64 resolutionPeriod; // seconds the drawn resolvers have to vote
        uint256 disputeBond; // wei the first disputer of a task locks (later ones in proportion to their panel)
        uint256 resolverFee; // wei from the losing side's bond for each resolver voting with the majority
    }

    struct Order {
        address client;
        uint64 deadline;
        Status status;
        uint16 taskCount;
        uint16 commits;
        uint16 verdicts;
        bytes32 specHash;
        uint256 escrow;
        uint256 allocated;
        uint64 commitWindow; // seconds a drawn worker has to commit its proof, and the verifier to verify it
    }

    struct Task {
        address worker;
        Verdict verdict;
        uint64 commitBlock;
        uint64 verdictAt;
        address verifier; // the validator whose verification of the task is on chain (zero before it)
        uint256 payment;
        bytes32 root;
        bytes32 reasonsDigest;
        address prover; // a disputer whose dispute was upheld: the bounty of this task's slash is its
        uint64 drawBlock; // the worker derives from the hash of the block after it
        uint64 commitBy; // past it, an uncommitted worker may be replaced by the next draw
        uint8 disputes; // opened on its verdict so far: the n-th (from 0) draws (and bonds) 2^n times the first, up to 15 resolvers
        // past it, with the task committed and unverified, the verifier may be replaced by the next draw; once
        // verified, the end of its scoring window, past which Wasp may void a verification it cannot judge with
        uint64 verifyBy;
    }

    struct ValidatorSlot {
        address validator;
        bool reported;
        bool overturned; // signed a verification that a dispute overturned: forfeits its fee
        uint256 fee;
        uint64 drawBlock; // the validator derives from the hash of the block after it
    }

    struct Dispute {
        address disputer;
        DisputeStatus status;
        bool claimAccepted; // the verdict the disputer says is right
        uint8 votesUphold;
        uint8 votesDismiss;
        uint64 anchorBlock; // resolvers derive from the hash of the block after it
        uint64 resolveBy;
        uint64 closedAt; // a verdict left standing (dismissed, expired) may be disputed again for a window from here
        uint256 bond;
        bytes32 counterDigest;
        bytes32 caseDigest; // SHA-256 of the case the disputer handed its resolvers (zero until it does)
        address[] resolvers;
    }

    StakingRegistry public immutable staking;
    address public immutable treasury;
    Params private _params;

    mapping(bytes32 => Order) private _orders;
    mapping(bytes32 => mapping(uint256 => Task)) private _tasks;
    mapping(bytes32 => ValidatorSlot[]) private _validators;
    mapping(bytes32 => mapping(address => uint256)) private _validatorSlot; // index + 1
    mapping(bytes32 => mapping(uint256 => mapping(uint8 => mapping(address => bytes32)))) private _reports;
    // A signature covers only the digest, so the same signed digest must not count twice anywhere.
    mapping(address => mapping(bytes32 => bool)) private _digestUsed;
    mapping(bytes32 => mapping(uint256 => Dispute)) private _disputes;
    mapping(bytes32 => mapping(uint256 => mapping(address => uint8))) private _votes; // 1 uphold, 2 dismiss
    mapping(bytes32 => mapping(uint256 => mapping(address => bool))) private _disputed; // who disputed a task
    mapping(bytes32 => mapping(uint256 => address[])) private _disputers; // the same, listed: its panels leave them out
    // bonds of dismissed disputes of an acceptance: the worker's at settlement if its work is still accepted
    mapping(bytes32 => mapping(uint256 => uint256)) private _held;
    mapping(bytes32 => mapping(address => bool)) private _drawn; // every member drawn for the order, replaced ones too
    // the order's replaced workers and verifiers: its draws leave them out, their stake bound until it closes
    mapping(bytes32 => address[]) private _replaced;
    mapping(bytes32 => uint256) private _drawCursor; // the task a draw starts at: where the last one ran out of tries
    mapping(bytes32 => mapping(uint256 => mapping(address => bytes32))) private _deliveries;
    mapping(address => uint256) public pending;
    mapping(address => bool) public isWasp; // the accounts that record verdicts, set by the owner
    uint256 public bonded; // dispute bonds held, not yet credited

    event OrderOpened(bytes32 indexed orderId, address indexed client, bytes32 specHash, uint256 escrow, uint64 deadline);
    event TaskAdded(bytes32 indexed orderId, uint256 indexed task, uint256 payment, uint64 drawBlock);
    event ValidatorSlotAdded(bytes32 indexed orderId, uint256 indexed slot, uint256 fee, uint64 drawBlock);
    event DrawReanchored(bytes32 indexed orderId, uint8 role, uint256 index, uint64 drawBlock);
    event TaskAssigned(bytes32 indexed orderId, uint256 indexed task, address indexed worker, uint256 payment);
    event ValidatorAssigned(bytes32 indexed orderId, address indexed validator, uint256 fee);
    event WorkerReplaced(bytes32 indexed orderId, uint256 indexed task, address indexed worker, uint64 drawBlock);
    event VerifierReplaced(bytes32 indexed orderId, uint256 indexed task, address indexed verifier, uint64 drawBlock);
    event ProofCommitted(bytes32 indexed orderId, uint256 indexed task, address indexed worker, bytes32 root);
    event ReportSubmitted(
        bytes32 indexed orderId, uint256 indexed task, address indexed validator, uint8 kind, bytes32 digest
    );
    event VerdictRecorded(bytes32 indexed orderId, uint256 indexed task, bool accepted, bytes32 reasonsDigest);
    event DeliveryRecorded(bytes32 indexed orderId, uint256 indexed task, address indexed validator, bytes32 digest);
    event DisputeOpened(
        bytes32 indexed orderId, uint256 indexed task, address indexed disputer, bool claimAccepted, uint256 bond,
        bytes32 counterDigest
    );
    event CaseHandedOver(bytes32 indexed orderId, uint256 indexed task, bytes32 caseDigest);
    event ResolversDrawn(bytes32 indexed orderId, uint256 indexed task, address[] resolvers, uint64 resolveBy);
    /// @dev A draw that found no eligible validator outside the order; past `resolveBy` anyone may expire the dispute.
    event NoResolversFound(bytes32 indexed orderId, uint256 indexed task, uint64 resolveBy);
    event DisputeVoted(
        bytes32 indexed orderId, uint256 indexed task, address indexed resolver, bool uphold, bytes32 reportDigest
    );
    event DisputeClosed(bytes32 indexed orderId, uint256 indexed task, DisputeStatus outcome, bool verdictAccepted);
    event Credited(bytes32 indexed orderId, address indexed account, uint256 amount, Credit kind);
    event Slashed(bytes32 indexed orderId, address indexed member, uint256 amount, uint256 bounty, uint256 toTreasury);
    event OrderSettled(bytes32 indexed orderId, uint256 refund);
    event OrderCancelled(bytes32 indexed orderId, uint256 refund);
    event Withdrawn(address indexed account, uint256 amount);
    event WaspSet(address indexed account, bool holds);

    error InvalidParams(string reason);
    error OrderExists(bytes32 orderId);
    error UnknownOrder(bytes32 orderId);
    error OrderNotOpen(bytes32 orderId, Status status);
    error OrderStarted(bytes32 orderId);
    error AlreadySettled(bytes32 orderId);
    error NotClient(address caller, address client);
    error DeadlineInPast(uint64 deadline, uint256 nowTime);
    error DeadlinePassed(uint64 deadline, uint256 nowTime);
    error InsufficientEscrow(uint256 required, uint256 sent);
    error EscrowExceeded(uint256 required, uint256 available);
    error TooManyTasks(uint256 limit);
    error TooManyValidators(uint256 limit);
    error UnknownTask(uint256 task);
    error InvalidCommitWindow();
    error NothingToDraw(bytes32 orderId);
    error NoEligibleMember(uint8 role, uint256 index);
    error NoWorker(uint256 task);
    error NotReplaceable(uint256 task, uint64 until);
    error NotTaskWorker(address caller, address worker);
    error AlreadyCommitted(uint256 task);
    error NotCommitted(uint256 task);
    error InvalidReportKind(uint8 kind);
    error InvalidSignature();
    error NotAssignedValidator(address signer);
    error NotVerifier(address signer, address verifier);
    error OwnVerification(address verifier, uint256 task);
    error ReportAlreadySubmitted(address validator, uint256 task, uint8 kind);
    error ReportReplayed(address validator, bytes32 digest);
    error VerdictAlreadyRecorded(uint256 task);
    error OrderNotSettled(bytes32 orderId, Status status);
    error NotAccepted(uint256 task);
    error AlreadyDelivered(address validator, uint256 task);
    error VerdictsPending(uint256 missing);
    error NoVerdict(uint256 task);
    error DisputeWindowOpen(uint256 task, uint64 finalAt);
    error DisputeWindowClosed(uint256 task, uint64 closedAt);
    error VerdictOverturned(uint256 task);
    error DisputedBefore(address account, uint256 task);
    error DisputeActive(uint256 task);
    error NotDisputing(uint256 task, DisputeStatus status);
    error WrongBond(uint256 required, uint256 sent);
    error NotStaked(address account);
    error PartyToOrder(address account);
    error DrawNotReady(uint64 anchorBlock);
    error NotResolver(address caller);
    error AlreadyVoted(address resolver);
    error VotingClosed(uint64 resolveBy, uint256 nowTime);
    error VotingOpen(uint64 resolveBy, uint256 nowTime);
    error NotDisputer(address caller, address disputer);
    error CaseRecorded(uint256 task);
    error HandOverClosed(uint64 handBy, uint256 nowTime);
    error CannotCancel(bytes32 orderId);
    error NothingToWithdraw(address account);
    error UnexpectedSender(address sender);
    error NotWasp(address caller);

    constructor(StakingRegistry staking_, address wasp, address treasury_, Params memory params_, address admin)
        Ownable(admin)
        EIP712("BahenMarket", "1")
    {
        if (params_.slashBps > 10_000 || params_.bountyBps > 10_000) revert InvalidParams("bps above 10000");
        if (params_.resolverCount == 0 || params_.resolverCount > MAX_RESOLVERS) {
            revert InvalidParams("resolverCount outside 1..15");
        }
        if (params_.resolverFee * params_.resolverCount > params_.disputeBond) {
            revert InvalidParams("resolver fees exceed the dispute bond");
        }
        // Stake bound to an order cannot unbond before settlement; past it, a member must not be
        // able to leave faster than a dispute about its work can run.
        if (staking_.unbondingDelay() <= uint256(params_.disputeWindow) + params_.resolutionPeriod) {
            revert InvalidParams("unbonding delay not longer than dispute window plus resolution period");
        }
        staking = staking_;
        treasury = treasury_;
        _params = params_;
        isWasp[wasp] = true;
        emit WaspSet(wasp, true);
    }

    /// @dev Slashed stake arrives from the registry; nothing else may pay in.
    receive() external payable {
        if (msg.sender != address(staking)) revert UnexpectedSender(msg.sender);
    }

    modifier onlyWasp() {
        if (!isWasp[msg.sender]) revert NotWasp(msg.sender);
        _;
    }

    /// @notice The owner (the market's admin) lets `account` record verdicts, or stops it.
    function setWasp(address account, bool holds) external onlyOwner {
        isWasp[account] = holds;
        emit WaspSet(account, holds);
    }

    function params() external view returns (Params memory) {
        return _params;
    }

    /// @notice The id of the order `client` opens with `salt`: no one else can take it first.
    function orderIdOf(address client, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(client, salt));
    }

    /// @notice Opens the order `orderIdOf(msg.sender, salt)`, whose escrow is the ether sent; it must
    /// cover the fee estimate. A drawn worker has `commitWindow` seconds to commit its proof.
    function openOrder(bytes32 salt, bytes32 specHash, uint256 feeEstimate, uint64 deadline, uint64 commitWindow)
        external
        payable
        returns (bytes32 orderId)
    {
        orderId = orderIdOf(msg.sender, salt);
        if (_orders[orderId].status != Status.None) revert OrderExists(orderId);
        if (deadline <= block.timestamp) revert DeadlineInPast(deadline, block.timestamp);
        if (msg.value < feeEstimate || msg.value == 0) revert InsufficientEscrow(feeEstimate, msg.value);
        if (commitWindow == 0) revert InvalidCommitWindow();
        Order storage o = _orders[orderId];
        o.client = msg.sender;
        o.deadline = deadline;
        o.status = Status.Open;
        o.specHash = specHash;
        o.escrow = msg.value;
        o.commitWindow = commitWindow;
        emit OrderOpened(orderId, msg.sender, specHash, msg.value, deadline);
    }

    /// @notice Adds a task paying `payment` from the escrow; its worker is drawn by `draw`.
    function addTask(bytes32 orderId, uint256 payment) external {
        Order storage o = _growingOrder(orderId);
        uint256 task = o.taskCount;
        if (task >= MAX_TASKS) revert TooManyTasks(MAX_TASKS);
        _reserve(o, payment);
        o.taskCount += 1;
        Task storage t = _tasks[orderId][task];
        t.payment = payment;
        t.drawBlock = uint64(block.number);
        emit TaskAdded(orderId, task, payment, t.drawBlock);
    }

    /// @notice Adds a validator slot paying `fee` from the escrow; its validator is drawn by `draw`.
    function addValidator(bytes32 orderId, uint256 fee) external {
        Order storage o = _growingOrder(orderId);
        ValidatorSlot[] storage slots = _validators[orderId];
        if (slots.length >= MAX_VALIDATORS) revert TooManyValidators(MAX_VALIDATORS);
        _reserve(o, fee);
        slots.push(ValidatorSlot(address(0), false, false, fee, uint64(block.number)));
        emit ValidatorSlotAdded(orderId, slots.length - 1, fee, uint64(block.number));
    }

    /// @dev The caller's order while it may still take tasks and validator slots: before its deadline
    /// and its first commitment (members drawn later would shrink the pool its disputes draw resolvers
    /// from, down to none: a dispute left drawing holds the order and its worker's stake for good).
    function _growingOrder(bytes32 orderId) private view returns (Order storage o) {
        o = _clientOrder(orderId);
        if (block.timestamp > o.deadline) revert DeadlinePassed(o.deadline, block.timestamp);
        if (o.commits != 0) revert OrderStarted(orderId);
    }

    /// @notice Draws a member for every task and validator slot of the order that has none, once
    /// the block after the one it was opened (or re-opened) in exists: a stake-weighted pick,
    /// seeded by that block's hash, among eligible members that are no party to the order (not its
    /// client, workers, validators, nor a worker replaced on it); a worker's stake must also cover
    /// its task's payment. Callable by anyone; a slot whose seed block is older than 256 blocks, or
    /// whose DRAW_TRIES found only members short of its stake, is re-anchored to the current block
    /// and drawn by a later call, as are the tasks past the call's DRAW_BUDGET of tries.
    function draw(bytes32 orderId) external {
        Order storage o = _openOrder(orderId);
        if (block.timestamp > o.deadline) revert DeadlinePassed(o.deadline, block.timestamp);
        bool any;
        staking.beginDraw();
        _leaveOutParties(orderId, o, StakingRegistry.Role.Worker);
        address[] memory found = new address[](DRAW_TRIES);
        uint256 budget = DRAW_BUDGET;
        uint256 start = _drawCursor[orderId];
        for (uint256 k = 0; k < o.taskCount; k++) {
            uint256 i = (start + k) % o.taskCount;
            if (budget == 0) {
                _drawCursor[orderId] = i; // the next call starts here, so no slot waits behind others
                break;
            }
            Task storage t = _tasks[orderId][i];
            if (t.worker != address(0)) continue;
            any = true;
            (bool ready, uint256 seed) = _seed(orderId, WORKER_DRAW, i, t.drawBlock);
            if (!ready) {
                t.drawBlock = uint64(block.number);
                continue;
            }
            // Cheating must cost more than it earns: at the weakest measured detection rate, the
            // expected slash of a worker's stake exceeds the share of the payment a cheat could keep.
            uint256 required = (t.payment * _params.stakeCoverageBps + 9_999) / 10_000;
            (address worker, uint256 tries) = _drawSlot(orderId, o, WORKER_DRAW, i, required, seed, found, budget);
            budget -= tries;
            if (worker == address(0)) {
                if (tries == DRAW_TRIES) t.drawBlock = uint64(block.number);
                continue;
            }
            t.worker = worker;
            t.commitBy = uint64(block.timestamp) + o.commitWindow;
            _drawn[orderId][worker] = true;
            staking.lock(worker);
            emit TaskAssigned(orderId, i, worker, t.payment);
        }
        ValidatorSlot[] storage slots = _validators[orderId];
        _leaveOutParties(orderId, o, StakingRegistry.Role.Validator);
        budget = DRAW_BUDGET; // a validator slot's tries find no member short of stake: one each
        for (uint256 j = 0; j < slots.length && budget != 0; j++) {
            if (slots[j].validator != address(0)) continue;
            any = true;
            (bool ready, uint256 seed) = _seed(orderId, VALIDATOR_DRAW, j, slots[j].drawBlock);
            if (!ready) {
                slots[j].drawBlock = uint64(block.number);
                continue;
            }
            (address validator, uint256 tries) = _drawSlot(orderId, o, VALIDATOR_DRAW, j, 0, seed, found, budget);
            budget -= tries;
            if (validator == address(0)) {
                if (tries == DRAW_TRIES) slots[j].drawBlock = uint64(block.number);
                continue;
            }
            slots[j].validator = validator;
            _validatorSlot[orderId][validator] = j + 1;
            _drawn[orderId][validator] = true;
            staking.lock(validator);
            if (j == 0) _restartVerification(orderId, o);
            emit ValidatorAssigned(orderId, validator, slots[j].fee);
        }
        if (!any) revert NothingToDraw(orderId);
    }

    /// @notice Replaces whoever stalls task `task`. Its worker, when it has not committed its proof by
    /// `commitBy`: the task is re-opened for the next draw from the current block. Else the order's
    /// verifier, when the committed task has neither a verification on chain nor a verdict by
    /// `verifyBy` (the commit window from the commitment, or from the verifier's draw if later): it may
    /// no longer report for the order and earns no fee, and the first validator slot, fee and all, is
    /// re-opened for the next draw. Neither is slashed (nothing it signed was wrong) nor drawn for the
    /// order again; each stays bound until the order closes (a verification the verifier signed of
    /// another task may still be overturned). Callable by anyone.
    function replaceStalled(bytes32 orderId, uint256 task) external {
        Order storage o = _openOrder(orderId);
        Task storage t = _task(orderId, o, task);
        if (t.worker == address(0)) revert NoWorker(task);
        bool committed = t.commitBlock != 0;
        uint64 until = committed ? t.verifyBy : t.commitBy;
        ValidatorSlot[] storage slots = _validators[orderId];
        if (
            t.verdict != Verdict.None || block.timestamp <= until
                || (committed && (t.verifier != address(0) || slots.length == 0 || slots[0].validator == address(0)))
        ) revert NotReplaceable(task, until);
        if (!committed) {
            address worker = t.worker;
            _replaced[orderId].push(worker);
            t.worker = address(0);
            t.commitBy = 0;
            t.drawBlock = uint64(block.number);
            emit WorkerReplaced(orderId, task, worker, t.drawBlock);
            return;
        }
        _replaceVerifier(orderId, task, slots);
    }

    /// @notice Wasp voids the verification of task `task` that it cannot judge with: attested on chain, but
    /// the signed report its digest names is not in the store whole, or checked another order, task,
    /// challenge or root. Only with no verdict and past `verifyBy` (the commit window from the
    /// verification, which an honest verifier, publishing before it attests, never needs). The task is
    /// unverified again; a verifier still in the first slot is replaced as a stalled one is (no fee, not
    /// slashed, bound until the order closes), else the slot's validator has the commit window from now.
    function voidVerification(bytes32 orderId, uint256 task) external onlyWasp {
        Order storage o = _openOrder(orderId);
        Task storage t = _task(orderId, o, task);
        address verifier = t.verifier;
        if (verifier == address(0) || t.verdict != Verdict.None || block.timestamp <= t.verifyBy) {
            revert NotReplaceable(task, t.verifyBy);
        }
        t.verifier = address(0);
        t.verifyBy = uint64(block.timestamp) + o.commitWindow;
        ValidatorSlot[] storage slots = _validators[orderId];
        if (slots[0].validator == verifier) _replaceVerifier(orderId, task, slots);
    }

    /// @dev Re-opens the first validator slot, fee and all, for the next draw; its validator may no longer report.
    function _replaceVerifier(bytes32 orderId, uint256 task, ValidatorSlot[] storage slots) private {
        address verifier = slots[0].validator;
        _replaced[orderId].push(verifier);
        delete _validatorSlot[orderId][verifier];
        slots[0] = ValidatorSlot(address(0), false, false, slots[0].fee, uint64(block.number));
        emit VerifierReplaced(orderId, task, verifier, uint64(block.number));
    }

    /// @dev The verifier just drawn has the commit window from now for every committed task still unverified.
    function _restartVerification(bytes32 orderId, Order storage o) private {
        for (uint256 i = 0; i < o.taskCount; i++) {
            Task storage t = _tasks[orderId][i];
            if (t.commitBlock != 0 && t.verifier == address(0)) t.verifyBy = uint64(block.timestamp) + o.commitWindow;
        }
    }

    /// @dev keccak256(abi.encode(hash of the block after `drawBlock`, order id, role, index)); not
    /// ready when that hash has aged out (older than 256 blocks) and the slot must be re-anchored.
    function _seed(bytes32 orderId, uint8 role, uint256 index, uint64 drawBlock) private returns (bool, uint256) {
        if (block.number <= uint256(drawBlock) + 1) revert DrawNotReady(drawBlock);
        bytes32 hash = blockhash(uint256(drawBlock) + 1);
        if (hash == bytes32(0)) {
            emit DrawReanchored(orderId, role, index, uint64(block.number));
            return (false, 0);
        }
        return (true, uint256(keccak256(abi.encode(hash, orderId, role, index))));
    }

    /// @dev Leaves the order's parties that hold weight in `role`'s tree out of the draw: its client,
    /// the members drawn for it in `role` (its workers, or its validators) and every member replaced on it.
    function _leaveOutParties(bytes32 orderId, Order storage o, StakingRegistry.Role role) private {
        staking.leaveOut(role, o.client);
        if (role == StakingRegistry.Role.Worker) {
            for (uint256 i = 0; i < o.taskCount; i++) {
                address worker = _tasks[orderId][i].worker;
                if (worker != address(0)) staking.leaveOut(role, worker);
            }
        } else {
            ValidatorSlot[] storage slots = _validators[orderId];
            for (uint256 j = 0; j < slots.length; j++) {
                if (slots[j].validator != address(0)) staking.leaveOut(role, slots[j].validator);
            }
        }
        address[] storage replaced = _replaced[orderId];
        for (uint256 k = 0; k < replaced.length; k++) {
            staking.leaveOut(role, replaced[k]); // no effect on a member of the other role
        }
    }

    /// @dev Draws slot `index` of `role` from `seed` with at most `budget` of the call's tries,
    /// recording them in `found`; the member drawn stays out of the draw's later slots, those found
    /// short of this slot's stake count again. Returns the member and the tries spent: address(0)
    /// when the slot's own DRAW_TRIES ran out (it re-anchors to the current block) or the call's
    /// budget did (it waits for the next call). Reverts when no member qualifies.
    function _drawSlot(
        bytes32 orderId,
        Order storage o,
        uint8 role,
        uint256 index,
        uint256 required,
        uint256 seed,
        address[] memory found,
        uint256 budget
    ) private returns (address member, uint256 tries) {
        uint256 limit = budget < DRAW_TRIES ? budget : DRAW_TRIES;
        (member, tries) = _drawMember(orderId, o, role, required, seed, found, 0, limit);
        StakingRegistry.Role kind = _kind(role);
        for (uint256 k = 0; k < tries; k++) {
            if (found[k] != member) staking.readmit(kind, found[k]);
        }
        if (member != address(0)) return (member, tries);
        if (tries < limit) revert NoEligibleMember(role, index);
        if (tries == DRAW_TRIES) emit DrawReanchored(orderId, role, index, uint64(block.number));
    }

    /// @dev A stake-weighted draw of one member of `role` among those that qualify: eligible, not left
    /// out of the draw, no party to the order, with a stake of at least `required`. Try k picks among
    /// the members not left out, seeded by keccak256(abi.encode(seed, k)), records the one found in
    /// `found[k]` and leaves it out; one that does not qualify is so left out of the next try, which
    /// keeps the draw stake-weighted among those that do. Returns the member and the tries used,
    /// at most `limit`: address(0) when none qualifies, or with the tries at `limit`.
    function _drawMember(
        bytes32 orderId,
        Order storage o,
        uint8 role,
        uint256 required,
        uint256 seed,
        address[] memory found,
        uint256 tries,
        uint256 limit
    ) private returns (address, uint256) {
        StakingRegistry.Role kind = _kind(role);
        while (tries < limit) {
            (address m, uint256 stake) = staking.pick(kind, uint256(keccak256(abi.encode(seed, tries))));
            if (m == address(0)) break;
            staking.leaveOut(kind, m);
            found[tries++] = m;
            if (stake >= required && !_partyTo(orderId, o, m)) return (m, tries);
        }
        return (address(0), tries);
    }

    function _kind(uint8 role) private pure returns (StakingRegistry.Role) {
        return role == WORKER_DRAW ? StakingRegistry.Role.Worker : StakingRegistry.Role.Validator;
    }

    /// @notice The task's worker commits the Merkle root of its proof, before any challenge exists.
    function commitProof(bytes32 orderId, uint256 task, bytes32 root) external {
        Order storage o = _openOrder(orderId);
        Task storage t = _task(orderId, o, task);
        if (msg.sender != t.worker) revert NotTaskWorker(msg.sender, t.worker);
        if (block.timestamp > o.deadline) revert DeadlinePassed(o.deadline, block.timestamp);
        if (t.commitBlock != 0) revert AlreadyCommitted(task);
        if (t.verdict != Verdict.None) revert VerdictAlreadyRecorded(task);
        t.commitBlock = uint64(block.number);
        t.verifyBy = uint64(block.timestamp) + o.commitWindow;
        t.root = root;
        o.commits += 1;
        emit ProofCommitted(orderId, task, msg.sender, root);
    }

    /// @notice Records a report digest attested by an assigned validator: an EIP-712 signature over
    /// Report(orderId, task, kind, digest) under this contract's domain (name BahenMarket, version 1,
    /// the chain id, this address), so an attestation made for another order, task, kind, chain or
    /// contract recovers another signer. Anyone may relay it; the signature decides whose report it is.
    /// A task's verification (kind 0) is the order's verifier's alone, the validator of its first slot,
    /// and only before the task's verdict: one attested afterwards proved nothing the verdict used.
    function submitReport(bytes32 orderId, uint256 task, uint8 kind, bytes32 digest, bytes calldata signature)
        external
    {
        Order storage o = _openOrder(orderId);
        Task storage t = _task(orderId, o, task);
        if (t.commitBlock == 0) revert NotCommitted(task);
        if (kind > 1) revert InvalidReportKind(kind);
        (address signer, ECDSA.RecoverError err,) =
            ECDSA.tryRecover(_hashTypedDataV4(keccak256(abi.encode(REPORT_TYPEHASH, orderId, task, kind, digest))), signature);
        if (err != ECDSA.RecoverError.NoError) revert InvalidSignature();
        uint256 slot = _validatorSlot[orderId][signer];
        if (slot == 0) revert NotAssignedValidator(signer);
        if (kind == VERIFICATION && slot != 1) revert NotVerifier(signer, _validators[orderId][0].validator);
        if (kind == VERIFICATION && t.verdict != Verdict.None) revert VerdictAlreadyRecorded(task);
        if (_reports[orderId][task][kind][signer] != bytes32(0)) revert ReportAlreadySubmitted(signer, task, kind);
        if (_digestUsed[signer][digest]) revert ReportReplayed(signer, digest);
        _digestUsed[signer][digest] = true;
        _reports[orderId][task][kind][signer] = digest;
        if (kind == VERIFICATION) {
            t.verifier = signer;
            t.verifyBy = uint64(block.timestamp) + o.commitWindow; // the validators' scoring window
        }
        _validators[orderId][slot - 1].reported = true;
        emit ReportSubmitted(orderId, task, signer, kind, digest);
    }

    function recordVerdict(bytes32 orderId, uint256 task, bool accepted, bytes32 reasonsDigest)
        external
        onlyWasp
    {
        Order storage o = _openOrder(orderId);
        Task storage t = _task(orderId, o, task);
        if (t.worker == address(0)) revert NoWorker(task);
        if (t.verdict != Verdict.None) revert VerdictAlreadyRecorded(task);
        if (accepted && t.commitBlock == 0) revert NotCommitted(task);
        t.verdict = accepted ? Verdict.Accepted : Verdict.Rejected;
        t.verdictAt = uint64(block.timestamp);
        t.reasonsDigest = reasonsDigest;
        o.verdicts += 1;
        emit VerdictRecorded(orderId, task, accepted, reasonsDigest);
    }

    /// @notice An assigned validator records the digest of its signed delivery of an accepted task's
    /// model key (wrapped to the client and the order's auditors), once the order is settled; once
    /// per validator and task. It moves no funds: the client and the auditors find the delivery by
    /// this digest rather than by a name in the artifact store, which anyone could take first.
    function recordDelivery(bytes32 orderId, uint256 task, bytes32 digest) external {
        Order storage o = _orders[orderId];
        if (o.status != Status.Settled) revert OrderNotSettled(orderId, o.status);
        if (_task(orderId, o, task).verdict != Verdict.Accepted) revert NotAccepted(task);
        if (_validatorSlot[orderId][msg.sender] == 0) revert NotAssignedValidator(msg.sender);
        if (_deliveries[orderId][task][msg.sender] != bytes32(0)) revert AlreadyDelivered(msg.sender, task);
        _deliveries[orderId][task][msg.sender] = digest;
        emit DeliveryRecorded(orderId, task, msg.sender, digest);
    }

    /// @notice Credits every party of an order once: when every task's verdict is final (its dispute
    /// window passed, no dispute open), or after the deadline, when a task without a verdict is
    /// neither paid nor slashed. Callable by anyone.
    function settle(bytes32 orderId) external nonReentrant {
        Order storage o = _orders[orderId];
        if (o.status == Status.Settled) revert AlreadySettled(orderId);
        if (o.status != Status.Open) revert OrderNotOpen(orderId, o.status);
        if (o.verdicts < o.taskCount && block.timestamp <= o.deadline) {
            revert VerdictsPending(o.taskCount - o.verdicts);
        }
        for (uint256 i = 0; i < o.taskCount; i++) {
            Task storage t = _tasks[orderId][i];
            if (t.verdict == Verdict.None) continue;
            DisputeStatus d = _disputes[orderId][i].status;
            if (_active(d)) revert DisputeActive(i);
            uint64 finalAt = _disputableUntil(orderId, i);
            if (d != DisputeStatus.Upheld && block.timestamp <= finalAt) revert DisputeWindowOpen(i, finalAt);
        }
        o.status = Status.Settled;
        uint256 paid = _settleTasks(orderId, o);
        paid += _settleValidators(orderId, false);
        uint256 refund = o.escrow - paid;
        _credit(orderId, o.client, refund, Credit.Refund);
        emit OrderSettled(orderId, refund);
    }

    /// @notice Disputes a task's verdict within its window, locking exactly `disputeBond` times its
    /// panel over `resolverCount`: each dispute of the task before doubles the resolvers it draws, up
    /// to `MAX_RESOLVERS`, so a ring of disputers buys no fresh small draws at a dishonest majority; the
    /// bond grows with the panel whose fees it pays, at most `MAX_RESOLVERS / resolverCount` times the
    /// first. Any
    /// staked member may dispute except the order's client, the task's worker against the acceptance
    /// of its own work, and the verifier whose verification of the task is on chain (either would
    /// escape the slash of its own work or report, taking its bounty); `counterDigest` is the
    /// digest of the disputer's signed counter-report (in the artifact store). One dispute at a time,
    /// each member once per task: a dispute that leaves the verdict standing (dismissed, expired)
    /// opens the window again from its close, so a disputer that withholds its case from the resolvers
    /// (a cheat's accomplice, first to dispute) takes no other member's dispute away. An upheld
    /// dispute is final.
    function openDispute(bytes32 orderId, uint256 task, bytes32 counterDigest) external payable {
        Order storage o = _openOrder(orderId);
        Task storage t = _task(orderId, o, task);
        if (t.verdict == Verdict.None) revert NoVerdict(task);
        Dispute storage d = _disputes[orderId][task];
        if (_active(d.status)) revert DisputeActive(task);
        if (d.status == DisputeStatus.Upheld) revert VerdictOverturned(task);
        uint64 closesAt = _disputableUntil(orderId, task);
        if (block.timestamp > closesAt) revert DisputeWindowClosed(task, closesAt);
        if (_disputed[orderId][task][msg.sender]) revert DisputedBefore(msg.sender, task);
        uint256 bond = disputeBondOf(orderId, task);
        if (msg.value != bond) revert WrongBond(bond, msg.value);
        if (msg.sender == o.client || (msg.sender == t.worker && t.verdict == Verdict.Accepted)) {
            revert PartyToOrder(msg.sender);
        }
        if (msg.sender == _verifierOf(orderId, task)) revert OwnVerification(msg.sender, task);
        if (!staking.isEligibleWorker(msg.sender) && !staking.isEligibleValidator(msg.sender)) {
            revert NotStaked(msg.sender);
        }
        for (uint256 i = 0; i < d.resolvers.length; i++) {
            delete _votes[orderId][task][d.resolvers[i]]; // the last dispute's: a resolver drawn again votes anew
        }
        delete _disputes[orderId][task];
        _disputed[orderId][task][msg.sender] = true;
        _disputers[orderId][task].push(msg.sender);
        t.disputes += 1;
        d.disputer = msg.sender;
        d.status = DisputeStatus.Drawing;
        d.claimAccepted = t.verdict == Verdict.Rejected;
        d.anchorBlock = uint64(block.number);
        d.bond = msg.value;
        d.counterDigest = counterDigest;
        bonded += msg.value;
        emit DisputeOpened(orderId, task, msg.sender, d.claimAccepted, msg.value, counterDigest);
    }

    /// @notice Draws the dispute's resolvers once the block after the dispute exists: a
    /// stake-weighted sample of `_panel` validators (`resolverCount` doubled for each earlier dispute
    /// of the task, at most `MAX_RESOLVERS`), seeded by that block's hash, of eligible validators that are no party
    /// to the order (not its client, worker, validators) nor disputers of the task. Callable by anyone; if
    /// the seed block is older than 256 blocks the draw re-anchors to the current block.
    function drawResolvers(bytes32 orderId, uint256 task) external {
        Order storage o = _openOrder(orderId);
        Dispute storage d = _disputes[orderId][task];
        if (d.status != DisputeStatus.Drawing) revert NotDisputing(task, d.status);
        if (block.number <= d.anchorBlock + 1) revert DrawNotReady(d.anchorBlock);
        bytes32 hash = blockhash(d.anchorBlock + 1);
        if (hash == bytes32(0)) {
            d.anchorBlock = uint64(block.number);
            return;
        }
        uint256 seed = uint256(keccak256(abi.encode(hash, orderId, task)));
        uint256 count = _panel(_tasks[orderId][task].disputes - 1);
        staking.beginDraw();
        _leaveOutParties(orderId, o, StakingRegistry.Role.Validator);
        address[] storage disputers = _disputers[orderId][task];
        for (uint256 k = 0; k < disputers.length; k++) {
            staking.leaveOut(StakingRegistry.Role.Validator, disputers[k]);
        }
        // With the parties and disputers left out, try k draws the k-th resolver, until none is left.
        address[] memory found = new address[](count);
        uint256 n;
        while (n < count) {
            (address resolver, uint256 tries) = _drawMember(orderId, o, VALIDATOR_DRAW, 0, seed, found, n, n + 1);
            if (resolver == address(0)) break;
            n = tries;
        }
        for (uint256 k = 0; k < n; k++) {
            d.resolvers.push(found[k]);
            staking.lock(found[k]);
        }
        if (n == 0) {
            // Nobody to draw: one resolution period from the first such draw for a validator to
            // register, then anyone may expire the dispute. Only a draw that ran records it, so a
            // draw made to fail (out of gas) never lets a dispute lapse.
            if (d.resolveBy == 0) d.resolveBy = uint64(block.timestamp) + _params.resolutionPeriod;
            emit NoResolversFound(orderId, task, d.resolveBy);
            return;
        }
        d.status = DisputeStatus.Voting;
        d.resolveBy = uint64(block.timestamp) + _params.resolutionPeriod;
        emit ResolversDrawn(orderId, task, d.resolvers, d.resolveBy);
    }

    /// @notice The disputer records the SHA-256 of the case it hands its drawn resolvers (stored
    /// under a name that holds the digest), once, within the first half of the resolution period.
    /// Resolvers take only the case whose digest the chain holds, so nobody can hand them another
    /// first, and vote to dismiss a dispute whose case is not recorded by then, or not in the store.
    function handOver(bytes32 orderId, uint256 task, bytes32 caseDigest) external {
        Dispute storage d = _disputes[orderId][task];
        if (d.status != DisputeStatus.Voting) revert NotDisputing(task, d.status);
        if (msg.sender != d.disputer) revert NotDisputer(msg.sender, d.disputer);
        if (d.caseDigest != 0) revert CaseRecorded(task);
        uint64 handBy = d.resolveBy - _params.resolutionPeriod + _params.resolutionPeriod / 2;
        if (block.timestamp > handBy) revert HandOverClosed(handBy, block.timestamp);
        d.caseDigest = caseDigest;
        emit CaseHandedOver(orderId, task, caseDigest);
    }

    /// @notice A drawn resolver's vote after re-verifying the task: `uphold` when its
    /// re-verification contradicts the verdict. A majority of the drawn resolvers closes the dispute.
    function voteDispute(bytes32 orderId, uint256 task, bool uphold, bytes32 reportDigest) external nonReentrant {
        _openOrder(orderId);
        Dispute storage d = _disputes[orderId][task];
        if (d.status != DisputeStatus.Voting) revert NotDisputing(task, d.status);
        if (block.timestamp > d.resolveBy) revert VotingClosed(d.resolveBy, block.timestamp);
        if (!_isResolver(d, msg.sender)) revert NotResolver(msg.sender);
        if (_votes[orderId][task][msg.sender] != 0) revert AlreadyVoted(msg.sender);
        _votes[orderId][task][msg.sender] = uphold ? 1 : 2;
        if (uphold) d.votesUphold += 1;
        else d.votesDismiss += 1;
        emit DisputeVoted(orderId, task, msg.sender, uphold, reportDigest);
        uint256 majority = d.resolvers.length / 2 + 1;
        if (d.votesUphold >= majority) _closeDispute(orderId, task, DisputeStatus.Upheld);
        else if (d.votesDismiss >= majority) _closeDispute(orderId, task, DisputeStatus.Dismissed);
    }

    /// @notice Closes a dispute whose resolvers reached no majority in time, or whose draw found none
    /// (every eligible validator a party to the order) and found none again within the resolution
    /// period from then: the verdict stands, voters are paid their fee from the bond and the rest
    /// returns to the disputer. A dispute with resolvers whose disputer never recorded its case
    /// closes as dismissed instead, the rest of the bond to the side that was right: withholding the
    /// case buys nothing, whether or not its resolvers voted.
    function expireDispute(bytes32 orderId, uint256 task) external nonReentrant {
        _openOrder(orderId);
        Dispute storage d = _disputes[orderId][task];
        if (!_active(d.status)) revert NotDisputing(task, d.status);
        if (d.resolveBy == 0 || block.timestamp <= d.resolveBy) revert VotingOpen(d.resolveBy, block.timestamp);
        bool withheld = d.status == DisputeStatus.Voting && d.caseDigest == 0;
        _closeDispute(orderId, task, withheld ? DisputeStatus.Dismissed : DisputeStatus.Expired);
    }

    function getDispute(bytes32 orderId, uint256 task) external view returns (Dispute memory) {
        return _disputes[orderId][task];
    }

    /// @dev Pays the resolvers from the bond, then moves the money the outcome says. Upheld: the
    /// verdict flips, the rest of the bond returns to the disputer, who earns the bounty of every
    /// slash it proved: now the verifier's when its verification was overturned, and at settlement
    /// the worker's when the work turned out rejected. Dismissed: the rest of the bond goes to the
    /// side that was right (the accused worker, or the treasury when the verdict was a rejection).
    function _closeDispute(bytes32 orderId, uint256 task, DisputeStatus outcome) private {
        Dispute storage d = _disputes[orderId][task];
        Task storage t = _tasks[orderId][task];
        d.status = outcome;
        d.closedAt = uint64(block.timestamp);
        uint256 rest = d.bond;
        bonded -= d.bond;
        for (uint256 i = 0; i < d.resolvers.length; i++) {
            address r = d.resolvers[i];
            staking.unlock(r);
            uint8 vote = _votes[orderId][task][r];
            bool paid = outcome == DisputeStatus.Expired
                ? vote != 0
                : vote == (outcome == DisputeStatus.Upheld ? 1 : 2);
            if (paid) {
                _credit(orderId, r, _params.resolverFee, Credit.ResolverFee);
                rest -= _params.resolverFee;
            }
        }
        if (outcome == DisputeStatus.Dismissed && t.verdict == Verdict.Accepted) {
            _held[orderId][task] += rest; // still bonded; paid out at settlement (`_settleTasks`)
            bonded += rest;
        } else if (outcome == DisputeStatus.Dismissed) {
            _credit(orderId, treasury, rest, Credit.BondForfeited);
        } else {
            _credit(orderId, d.disputer, rest, Credit.BondReturned);
        }
        if (outcome == DisputeStatus.Upheld) {
            t.prover = d.disputer;
            t.verdict = d.claimAccepted ? Verdict.Accepted : Verdict.Rejected;
            _slashOverturnedVerifier(orderId, task, d.disputer);
        }
        emit DisputeClosed(orderId, task, outcome, t.verdict == Verdict.Accepted);
    }

    /// @dev A verdict overturned by re-verification: the task's verifier (never the disputer, see
    /// `openDispute`) signed a verification of the task that the resolvers could not reproduce. Still
    /// the order's verifier, it forfeits its fee; replaced, it had none to forfeit.
    function _slashOverturnedVerifier(bytes32 orderId, uint256 task, address disputer) private {
        address verifier = _verifierOf(orderId, task);
        if (verifier == address(0)) return;
        if (_validatorSlot[orderId][verifier] != 0) _validators[orderId][0].overturned = true;
        _slash(orderId, verifier, disputer);
    }

    /// @dev The end of the window in which the task's verdict may be disputed: `disputeWindow` after the
    /// verdict, or after the close of the last dispute when it left the verdict standing.
    function _disputableUntil(bytes32 orderId, uint256 task) private view returns (uint64) {
        Dispute storage d = _disputes[orderId][task];
        bool stood = d.status == DisputeStatus.Dismissed || d.status == DisputeStatus.Expired;
        return (stood ? d.closedAt : _tasks[orderId][task].verdictAt) + _params.disputeWindow;
    }

    /// @dev The validator whose verification of `task` is on chain, else address 0.
    function _verifierOf(bytes32 orderId, uint256 task) private view returns (address) {
        return _tasks[orderId][task].verifier;
    }

    /// @notice The wei the next dispute of the task locks: `disputeBond` in proportion to its panel.
    function disputeBondOf(bytes32 orderId, uint256 task) public view returns (uint256) {
        return _params.disputeBond * _panel(_tasks[orderId][task].disputes) / _params.resolverCount;
    }

    /// @dev The resolvers the n-th dispute of a task (from 0) draws: `resolverCount` doubled n times,
    /// at most `MAX_RESOLVERS`. Its bond is `disputeBond` in proportion, so it pays every fee.
    function _panel(uint256 n) private view returns (uint256) {
        uint256 panel = uint256(_params.resolverCount) << (n < 4 ? n : 4);
        return panel < MAX_RESOLVERS ? panel : MAX_RESOLVERS;
    }

    /// @dev Drawing its resolvers or voting: no other dispute of the task, no settlement meanwhile.
    function _active(DisputeStatus status) private pure returns (bool) {
        return status == DisputeStatus.Drawing || status == DisputeStatus.Voting;
    }

    function _isResolver(Dispute storage d, address account) private view returns (bool) {
        for (uint256 i = 0; i < d.resolvers.length; i++) {
            if (d.resolvers[i] == account) return true;
        }
        return false;
    }

    /// @dev Whether `account` is the order's client or was drawn for it (a worker, replaced or not, or a
    /// validator).
    function _partyTo(bytes32 orderId, Order storage o, address account) private view returns (bool) {
        return account == o.client || _drawn[orderId][account];
    }

    /// @notice The client takes its escrow back before any commitment, or after the deadline;
    /// once a verdict is recorded only settlement closes the order (it may slash).
    function cancelOrder(bytes32 orderId) external {
        Order storage o = _clientOrder(orderId);
        bool beforeWork = o.commits == 0 || block.timestamp > o.deadline;
        if (o.verdicts != 0 || !beforeWork) revert CannotCancel(orderId);
        o.status = Status.Cancelled;
        for (uint256 i = 0; i < o.taskCount; i++) {
            address worker = _tasks[orderId][i].worker;
            if (worker != address(0)) staking.unlock(worker);
        }
        _settleValidators(orderId, true);
        _credit(orderId, o.client, o.escrow, Credit.Refund);
        emit OrderCancelled(orderId, o.escrow);
    }

    /// @notice Pays out everything credited to the caller.
    function withdraw() external nonReentrant {
        uint256 amount = pending[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        pending[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    function getOrder(bytes32 orderId) external view returns (Order memory) {
        return _orders[orderId];
    }

    function getTask(bytes32 orderId, uint256 task) external view returns (Task memory) {
        return _tasks[orderId][task];
    }

    function getValidators(bytes32 orderId) external view returns (ValidatorSlot[] memory) {
        return _validators[orderId];
    }

    function reportOf(bytes32 orderId, uint256 task, uint8 kind, address validator) external view returns (bytes32) {
        return _reports[orderId][task][kind][validator];
    }

    function deliveryOf(bytes32 orderId, uint256 task, address validator) external view returns (bytes32) {
        return _deliveries[orderId][task][validator];
    }

    function _settleTasks(bytes32 orderId, Order storage o) private returns (uint256 paid) {
        for (uint256 i = 0; i < o.taskCount; i++) {
            Task storage t = _tasks[orderId][i];
            if (t.worker == address(0)) continue; // never drawn: its payment returns to the client
            staking.unlock(t.worker);
            uint256 held = _held[orderId][i];
            if (held != 0) {
                bonded -= held;
                _credit(orderId, t.verdict == Verdict.Accepted ? t.worker : treasury, held, Credit.BondForfeited);
            }
            if (t.verdict == Verdict.Accepted) {
                _credit(orderId, t.worker, t.payment, Credit.TaskPayment);
                paid += t.payment;
            } else if (t.verdict == Verdict.Rejected) {
                _slash(orderId, t.worker, _prover(orderId, i, t));
            }
        }
    }

    /// @dev Who proved task `task` fraudulent: an upheld disputer, else the order's verifier when its
    /// verification of the task is on chain, else nobody (address 0).
    function _prover(bytes32 orderId, uint256 task, Task storage t) private view returns (address) {
        return t.prover != address(0) ? t.prover : _verifierOf(orderId, task);
    }

    /// @dev Slashes `member`: the bounty to `prover` (the treasury's when there is none, address 0),
    /// the rest to the treasury. Never to the client, who must gain nothing from a rejection.
    function _slash(bytes32 orderId, address member, address prover) private {
        uint256 amount = staking.slash(member, _params.slashBps);
        uint256 bounty = prover == address(0) ? 0 : (amount * _params.bountyBps) / 10_000;
        if (prover != address(0)) _credit(orderId, prover, bounty, Credit.Bounty);
        uint256 toTreasury = amount - bounty;
        _credit(orderId, treasury, toTreasury, Credit.Treasury);
        emit Slashed(orderId, member, amount, bounty, toTreasury);
    }

    /// @dev Unlocks the stake of validators and of every member replaced on the order; unless cancelling,
    /// credits the validators that reported and whose verification no dispute overturned.
    function _settleValidators(bytes32 orderId, bool cancelling) private returns (uint256 paid) {
        address[] storage replaced = _replaced[orderId];
        for (uint256 k = 0; k < replaced.length; k++) {
            staking.unlock(replaced[k]);
        }
        ValidatorSlot[] storage slots = _validators[orderId];
        for (uint256 i = 0; i < slots.length; i++) {
            if (slots[i].validator == address(0)) continue; // never drawn: its fee returns to the client
            staking.unlock(slots[i].validator);
            if (!cancelling && slots[i].reported && !slots[i].overturned) {
                _credit(orderId, slots[i].validator, slots[i].fee, Credit.ValidatorFee);
                paid += slots[i].fee;
            }
        }
    }

    function _credit(bytes32 orderId, address account, uint256 amount, Credit kind) private {
        if (amount == 0) return;
        pending[account] += amount;
        emit Credited(orderId, account, amount, kind);
    }

    function _reserve(Order storage o, uint256 amount) private {
        uint256 required = o.allocated + amount;
        if (required > o.escrow) revert EscrowExceeded(required, o.escrow);
        o.allocated = required;
    }

    function _openOrder(bytes32 orderId) private view returns (Order storage o) {
        o = _orders[orderId];
        if (o.status == Status.None) revert UnknownOrder(orderId);
        if (o.status != Status.Open) revert OrderNotOpen(orderId, o.status);
    }

    function _clientOrder(bytes32 orderId) private view returns (Order storage o) {
        o = _openOrder(orderId);
        if (msg.sender != o.client) revert NotClient(msg.sender, o.client);
    }

    function _task(bytes32 orderId, Order storage o, uint256 task) private view returns (Task storage) {
        if (task >= o.taskCount) revert UnknownTask(task);
        return _tasks[orderId][task];
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {StakingRegistry} from "./StakingRegistry.sol";

/// @title BahenMarket
/// @notice Order book with escrow, proof registry and settlement. A client escrows its payment,
/// assigns tasks to staked workers and fees to staked validators; workers commit proof roots,
/// validators' signed report digests are recorded, the Wasp role records verdicts, and settlement
/// credits pull payments: accepted work and reporting validators are paid, rejected workers are
/// slashed to the client and the treasury, and the rest of the escrow returns to the client.
contract BahenMarket is AccessControl, ReentrancyGuard {
    bytes32 public constant WASP_ROLE = keccak256("WASP_ROLE");
    uint256 public constant MAX_TASKS = 64;
    uint256 public constant MAX_VALIDATORS = 32;

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
    }

    struct Task {
        address worker;
        Verdict verdict;
        uint64 commitBlock;
        uint256 payment;
        bytes32 root;
        bytes32 reasonsDigest;
    }

    struct ValidatorSlot {
        address validator;
        bool reported;
        uint256 fee;
    }

    StakingRegistry public immutable staking;
    address public immutable treasury;
    uint16 public immutable slashBps;
    uint16 public immutable treasuryBps;

    mapping(bytes32 => Order) private _orders;
    mapping(bytes32 => mapping(uint256 => Task)) private _tasks;
    mapping(bytes32 => ValidatorSlot[]) private _validators;
    mapping(bytes32 => mapping(address => uint256)) private _validatorSlot; // index + 1
    mapping(bytes32 => mapping(uint256 => mapping(uint8 => mapping(address => bytes32)))) private _reports;
    // A signature covers only the digest, so the same signed digest must not count twice anywhere.
    mapping(address => mapping(bytes32 => bool)) private _digestUsed;
    mapping(address => uint256) public pending;

    event OrderOpened(bytes32 indexed orderId, address indexed client, bytes32 specHash, uint256 escrow, uint64 deadline);
    event TaskAssigned(bytes32 indexed orderId, uint256 indexed task, address indexed worker, uint256 payment);
    event ValidatorAssigned(bytes32 indexed orderId, address indexed validator, uint256 fee);
    event ProofCommitted(bytes32 indexed orderId, uint256 indexed task, address indexed worker, bytes32 root);
    event ReportSubmitted(
        bytes32 indexed orderId, uint256 indexed task, address indexed validator, uint8 kind, bytes32 digest
    );
    event VerdictRecorded(bytes32 indexed orderId, uint256 indexed task, bool accepted, bytes32 reasonsDigest);
    event Paid(bytes32 indexed orderId, address indexed account, uint256 amount);
    event Slashed(bytes32 indexed orderId, address indexed worker, uint256 amount, uint256 toClient, uint256 toTreasury);
    event OrderSettled(bytes32 indexed orderId, uint256 refund, uint256 slashToClient, uint256 slashToTreasury);
    event OrderCancelled(bytes32 indexed orderId, uint256 refund);
    event Withdrawn(address indexed account, uint256 amount);

    error InvalidBps(uint256 bps);
    error OrderExists(bytes32 orderId);
    error UnknownOrder(bytes32 orderId);
    error OrderNotOpen(bytes32 orderId, Status status);
    error AlreadySettled(bytes32 orderId);
    error NotClient(address caller, address client);
    error DeadlineInPast(uint64 deadline, uint256 nowTime);
    error DeadlinePassed(uint64 deadline, uint256 nowTime);
    error InsufficientEscrow(uint256 required, uint256 sent);
    error EscrowExceeded(uint256 required, uint256 available);
    error TooManyTasks(uint256 limit);
    error TooManyValidators(uint256 limit);
    error TaskAlreadyAssigned(uint256 task);
    error TaskOutOfOrder(uint256 task, uint256 expected);
    error UnknownTask(uint256 task);
    error WorkerNotEligible(address worker);
    error ValidatorNotEligible(address validator);
    error ValidatorAlreadyAssigned(address validator);
    error NotTaskWorker(address caller, address worker);
    error AlreadyCommitted(uint256 task);
    error NotCommitted(uint256 task);
    error InvalidReportKind(uint8 kind);
    error InvalidSignature();
    error NotAssignedValidator(address signer);
    error ReportAlreadySubmitted(address validator, uint256 task, uint8 kind);
    error ReportReplayed(address validator, bytes32 digest);
    error VerdictAlreadyRecorded(uint256 task);
    error VerdictsPending(uint256 missing);
    error CannotCancel(bytes32 orderId);
    error NothingToWithdraw(address account);
    error UnexpectedSender(address sender);

    constructor(StakingRegistry staking_, address wasp, address treasury_, uint16 slashBps_, uint16 treasuryBps_, address admin)
    {
        if (slashBps_ > 10_000) revert InvalidBps(slashBps_);
        if (treasuryBps_ > 10_000) revert InvalidBps(treasuryBps_);
        staking = staking_;
        treasury = treasury_;
        slashBps = slashBps_;
        treasuryBps = treasuryBps_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(WASP_ROLE, wasp);
    }

    /// @dev Slashed stake arrives from the registry during settlement; nothing else may pay in.
    receive() external payable {
        if (msg.sender != address(staking)) revert UnexpectedSender(msg.sender);
    }

    /// @notice Opens an order whose escrow is the ether sent; it must cover the fee estimate.
    function openOrder(bytes32 orderId, bytes32 specHash, uint256 feeEstimate, uint64 deadline) external payable {
        if (_orders[orderId].status != Status.None) revert OrderExists(orderId);
        if (deadline <= block.timestamp) revert DeadlineInPast(deadline, block.timestamp);
        if (msg.value < feeEstimate || msg.value == 0) revert InsufficientEscrow(feeEstimate, msg.value);
        Order storage o = _orders[orderId];
        o.client = msg.sender;
        o.deadline = deadline;
        o.status = Status.Open;
        o.specHash = specHash;
        o.escrow = msg.value;
        emit OrderOpened(orderId, msg.sender, specHash, msg.value, deadline);
    }

    /// @notice Assigns the next task of an order to an eligible worker, reserving its payment.
    function assignTask(bytes32 orderId, uint256 task, address worker, uint256 payment) external {
        Order storage o = _clientOrder(orderId);
        if (block.timestamp > o.deadline) revert DeadlinePassed(o.deadline, block.timestamp);
        if (task < o.taskCount) revert TaskAlreadyAssigned(task);
        if (task != o.taskCount) revert TaskOutOfOrder(task, o.taskCount);
        if (task >= MAX_TASKS) revert TooManyTasks(MAX_TASKS);
        if (!staking.isEligibleWorker(worker)) revert WorkerNotEligible(worker);
        _reserve(o, payment);
        o.taskCount += 1;
        _tasks[orderId][task] = Task(worker, Verdict.None, 0, payment, bytes32(0), bytes32(0));
        staking.lock(worker);
        emit TaskAssigned(orderId, task, worker, payment);
    }

    function assignValidator(bytes32 orderId, address validator, uint256 fee) external {
        Order storage o = _clientOrder(orderId);
        if (block.timestamp > o.deadline) revert DeadlinePassed(o.deadline, block.timestamp);
        if (_validatorSlot[orderId][validator] != 0) revert ValidatorAlreadyAssigned(validator);
        if (_validators[orderId].length >= MAX_VALIDATORS) revert TooManyValidators(MAX_VALIDATORS);
        if (!staking.isEligibleValidator(validator)) revert ValidatorNotEligible(validator);
        _reserve(o, fee);
        _validators[orderId].push(ValidatorSlot(validator, false, fee));
        _validatorSlot[orderId][validator] = _validators[orderId].length;
        staking.lock(validator);
        emit ValidatorAssigned(orderId, validator, fee);
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
        t.root = root;
        o.commits += 1;
        emit ProofCommitted(orderId, task, msg.sender, root);
    }

    /// @notice Records a report digest signed (EIP-191 over the 32-byte digest) by an assigned validator.
    /// Anyone may relay it; the signature decides whose report it is.
    function submitReport(bytes32 orderId, uint256 task, uint8 kind, bytes32 digest, bytes calldata signature)
        external
    {
        Order storage o = _openOrder(orderId);
        Task storage t = _task(orderId, o, task);
        if (t.commitBlock == 0) revert NotCommitted(task);
        if (kind > 1) revert InvalidReportKind(kind);
        (address signer, ECDSA.RecoverError err,) =
            ECDSA.tryRecover(MessageHashUtils.toEthSignedMessageHash(digest), signature);
        if (err != ECDSA.RecoverError.NoError) revert InvalidSignature();
        uint256 slot = _validatorSlot[orderId][signer];
        if (slot == 0) revert NotAssignedValidator(signer);
        if (_reports[orderId][task][kind][signer] != bytes32(0)) revert ReportAlreadySubmitted(signer, task, kind);
        if (_digestUsed[signer][digest]) revert ReportReplayed(signer, digest);
        _digestUsed[signer][digest] = true;
        _reports[orderId][task][kind][signer] = digest;
        _validators[orderId][slot - 1].reported = true;
        emit ReportSubmitted(orderId, task, signer, kind, digest);
    }

    function recordVerdict(bytes32 orderId, uint256 task, bool accepted, bytes32 reasonsDigest)
        external
        onlyRole(WASP_ROLE)
    {
        Order storage o = _openOrder(orderId);
        Task storage t = _task(orderId, o, task);
        if (t.verdict != Verdict.None) revert VerdictAlreadyRecorded(task);
        if (accepted && t.commitBlock == 0) revert NotCommitted(task);
        t.verdict = accepted ? Verdict.Accepted : Verdict.Rejected;
        t.reasonsDigest = reasonsDigest;
        o.verdicts += 1;
        emit VerdictRecorded(orderId, task, accepted, reasonsDigest);
    }

    /// @notice Credits every party of an order once: when all tasks have verdicts, or after the
    /// deadline (a task without a verdict is neither paid nor slashed). Callable by anyone.
    function settle(bytes32 orderId) external nonReentrant {
        Order storage o = _orders[orderId];
        if (o.status == Status.Settled) revert AlreadySettled(orderId);
        if (o.status != Status.Open) revert OrderNotOpen(orderId, o.status);
        if (o.verdicts < o.taskCount && block.timestamp <= o.deadline) {
            revert VerdictsPending(o.taskCount - o.verdicts);
        }
        o.status = Status.Settled;
        (uint256 paid, uint256 toClient, uint256 toTreasury) = _settleTasks(orderId, o);
        paid += _settleValidators(orderId, false);
        uint256 refund = o.escrow - paid;
        pending[o.client] += refund + toClient;
        pending[treasury] += toTreasury;
        emit OrderSettled(orderId, refund, toClient, toTreasury);
    }

    /// @notice The client takes its escrow back before any commitment, or after the deadline;
    /// once a verdict is recorded only settlement closes the order (it may slash).
    function cancelOrder(bytes32 orderId) external {
        Order storage o = _clientOrder(orderId);
        bool beforeWork = o.commits == 0 || block.timestamp > o.deadline;
        if (o.verdicts != 0 || !beforeWork) revert CannotCancel(orderId);
        o.status = Status.Cancelled;
        for (uint256 i = 0; i < o.taskCount; i++) {
            staking.unlock(_tasks[orderId][i].worker);
        }
        _settleValidators(orderId, true);
        pending[o.client] += o.escrow;
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

    function _settleTasks(bytes32 orderId, Order storage o)
        private
        returns (uint256 paid, uint256 toClient, uint256 toTreasury)
    {
        for (uint256 i = 0; i < o.taskCount; i++) {
            Task storage t = _tasks[orderId][i];
            staking.unlock(t.worker);
            if (t.verdict == Verdict.Accepted) {
                pending[t.worker] += t.payment;
                paid += t.payment;
                emit Paid(orderId, t.worker, t.payment);
            } else if (t.verdict == Verdict.Rejected) {
                uint256 amount = staking.slash(t.worker, slashBps);
                uint256 share = (amount * treasuryBps) / 10_000;
                toTreasury += share;
                toClient += amount - share;
                emit Slashed(orderId, t.worker, amount, amount - share, share);
            }
        }
    }

    /// @dev Unlocks validators' stake; unless cancelling, credits those that reported.
    function _settleValidators(bytes32 orderId, bool cancelling) private returns (uint256 paid) {
        ValidatorSlot[] storage slots = _validators[orderId];
        for (uint256 i = 0; i < slots.length; i++) {
            staking.unlock(slots[i].validator);
            if (!cancelling && slots[i].reported) {
                pending[slots[i].validator] += slots[i].fee;
                paid += slots[i].fee;
                emit Paid(orderId, slots[i].validator, slots[i].fee);
            }
        }
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

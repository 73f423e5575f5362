// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";

/// @title StakingRegistry
/// @notice Workers and validators publish an X25519 key and stake ether in proportion to the
/// compute they declare. Stake bound to an unsettled order cannot leave; only the market's
/// settlement can slash it; withdrawals wait out an unbonding delay. Each role keeps a Fenwick tree
/// of its members' drawing weights (a member's stake while it is eligible, else 0), so the market
/// draws a stake-weighted member in a number of reads logarithmic in how many ever registered: no
/// number of registrations, live or abandoned, makes a draw exceed a block's gas.
contract StakingRegistry is Ownable, ReentrancyGuard {
    enum Role {
        None,
        Worker,
        Validator
    }

    struct Member {
        Role role;
        bytes32 x25519;
        uint64 declaredGflops;
        uint64 unbondAt;
        uint32 locks;
        uint256 stake;
        uint256 unbonding;
    }

    uint256 public immutable stakeWeiPerGflop;
    uint256 public immutable minValidatorStake;
    uint64 public immutable unbondingDelay;
    address public market;

    mapping(address => Member) private _members;
    // Every worker and validator ever registered, in order: leaf i (1-based) of its role's tree.
    address[] private _workers;
    address[] private _validators;
    // Node i of a role's Fenwick tree at [i - 1]: the sum of the weights of leaves (i - lowbit(i), i].
    mapping(Role => uint256[]) private _tree;
    mapping(Role => uint256) private _totalWeight;
    mapping(address => uint256) private _leaf;
    mapping(address => uint256) private _weight;
    // The market's current draw; members it left out are masked in transient storage under it, so
    // the next draw (in the same transaction or not) starts with none left out.
    uint256 private transient _drawSession;

    event MemberRegistered(address indexed member, Role role, bytes32 x25519, uint64 declaredGflops, uint256 stake);
    event StakeAdded(address indexed member, uint256 amount);
    event UnbondRequested(address indexed member, uint256 amount, uint64 unbondAt);
    event UnbondedWithdrawn(address indexed member, uint256 amount);
    event StakeSlashed(address indexed member, uint256 amount);
    event MarketBound(address indexed market);

    error AlreadyRegistered(address member);
    error NotRegistered(address member);
    error InsufficientStake(uint256 required, uint256 sent);
    error ZeroCompute();
    error ZeroAmount();
    error StakeLocked(address member, uint32 locks);
    error UnbondExceedsStake(uint256 requested, uint256 stake);
    error UnbondingNotDue(uint64 unbondAt, uint256 nowTime);
    error NothingToWithdraw(address account);
    error MarketAlreadyBound(address market);
    error NotMarket(address caller);
    error InvalidBps(uint256 bps);

    modifier onlyMarket() {
        if (msg.sender != market) revert NotMarket(msg.sender);
        _;
    }

    constructor(uint256 stakeWeiPerGflop_, uint256 minValidatorStake_, uint64 unbondingDelay_, address owner_)
        Ownable(owner_)
    {
        stakeWeiPerGflop = stakeWeiPerGflop_;
        minValidatorStake = minValidatorStake_;
        unbondingDelay = unbondingDelay_;
    }

    /// @notice Binds the one market allowed to lock, unlock and slash stake (once, by the owner).
    function bindMarket(address market_) external onlyOwner {
        if (market != address(0)) revert MarketAlreadyBound(market);
        market = market_;
        emit MarketBound(market_);
    }

    /// @notice Stake a worker must hold for the compute it declares.
    function requiredStake(uint64 declaredGflops) public view returns (uint256) {
        return stakeWeiPerGflop * declaredGflops;
    }

    function registerWorker(bytes32 x25519, uint64 declaredGflops) external payable {
        if (declaredGflops == 0) revert ZeroCompute();
        uint256 required = requiredStake(declaredGflops);
        if (msg.value < required || msg.value == 0) revert InsufficientStake(required, msg.value);
        _register(Role.Worker, x25519, declaredGflops);
        _workers.push(msg.sender);
        _plant(Role.Worker, _workers.length, msg.sender, msg.value);
    }

    function registerValidator(bytes32 x25519) external payable {
        if (msg.value < minValidatorStake || msg.value == 0) revert InsufficientStake(minValidatorStake, msg.value);
        _register(Role.Validator, x25519, 0);
        _validators.push(msg.sender);
        _plant(Role.Validator, _validators.length, msg.sender, msg.value);
    }

    function addStake() external payable {
        Member storage m = _registered(msg.sender);
        if (msg.value == 0) revert ZeroAmount();
        m.stake += msg.value;
        _reweigh(msg.sender);
        emit StakeAdded(msg.sender, msg.value);
    }

    /// @notice Moves stake into unbonding; the clock restarts with every request.
    function requestUnbond(uint256 amount) external {
        Member storage m = _registered(msg.sender);
        if (amount == 0) revert ZeroAmount();
        if (m.locks != 0) revert StakeLocked(msg.sender, m.locks);
        if (amount > m.stake) revert UnbondExceedsStake(amount, m.stake);
        m.stake -= amount;
        m.unbonding += amount;
        m.unbondAt = uint64(block.timestamp) + unbondingDelay;
        _reweigh(msg.sender);
        emit UnbondRequested(msg.sender, amount, m.unbondAt);
    }

    function withdrawUnbonded() external nonReentrant {
        Member storage m = _members[msg.sender];
        uint256 amount = m.unbonding;
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        if (block.timestamp < m.unbondAt) revert UnbondingNotDue(m.unbondAt, block.timestamp);
        m.unbonding = 0;
        emit UnbondedWithdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    function isEligibleWorker(address account) external view returns (bool) {
        return _members[account].role == Role.Worker && _eligible(_members[account]);
    }

    function isEligibleValidator(address account) external view returns (bool) {
        return _members[account].role == Role.Validator && _eligible(_members[account]);
    }

    /// @notice The sum of the eligible stake of `role`'s members.
    function totalWeight(Role role) external view returns (uint256) {
        return _totalWeight[role];
    }

    /// @notice Starts a draw of the market's: members left out of the previous one count again.
    function beginDraw() external onlyMarket {
        _drawSession += 1;
    }

    /// @notice Leaves `account` out of `role`'s picks until the draw ends or it is readmitted; no
    /// effect on a non-member of `role`, a member of no weight or one already left out.
    function leaveOut(Role role, address account) external onlyMarket {
        uint256 w = _weight[account];
        if (_members[account].role != role || w == 0 || _flag(account) != 0) return;
        _setFlag(account, w);
        _mask(role, _leaf[account], w, true);
    }

    /// @notice Counts a member `leaveOut` left out of `role`'s picks again.
    function readmit(Role role, address account) external onlyMarket {
        uint256 w = _flag(account);
        if (_members[account].role != role || w == 0) return;
        _setFlag(account, 0);
        _mask(role, _leaf[account], w, false);
    }

    /// @notice A stake-weighted pick among the eligible members of `role` the draw has not left out:
    /// with `remaining` their weight and r = seed mod remaining, the first in registration order
    /// whose cumulative weight, counting no left-out member, exceeds r. Returns it and its weight,
    /// or zeros when no weight remains. Reads O(log n) nodes of the tree.
    function pick(Role role, uint256 seed) external view returns (address member, uint256 weight) {
        uint256 remaining = _totalWeight[role] - _maskedNode(role, 0);
        if (remaining == 0) return (address(0), 0);
        uint256 x = seed % remaining;
        // Fenwick descent: node leaf + step holds the weight of leaves (leaf, leaf + step], less the
        // left-out weight among them.
        uint256[] storage tree = _tree[role];
        uint256 n = tree.length;
        uint256 step = 1;
        while (step << 1 <= n) step <<= 1;
        uint256 leaf;
        for (; step != 0; step >>= 1) {
            uint256 next = leaf + step;
            if (next > n) continue;
            uint256 w = tree[next - 1] - _maskedNode(role, next);
            if (w <= x) {
                leaf = next;
                x -= w;
            }
        }
        member = _membersOf(role)[leaf];
        weight = _weight[member];
    }

    /// @notice Every registered worker, eligible or not, in registration order.
    function workers() external view returns (address[] memory) {
        return _workers;
    }

    /// @notice Every registered validator, eligible or not, in registration order.
    function validators() external view returns (address[] memory) {
        return _validators;
    }

    function memberOf(address account) external view returns (Member memory) {
        return _members[account];
    }

    /// @notice Binds stake to an order until it settles or is cancelled.
    function lock(address account) external onlyMarket {
        _members[account].locks += 1;
    }

    function unlock(address account) external onlyMarket {
        _members[account].locks -= 1;
    }

    /// @notice Takes `bps` of the member's stake and sends it to the market, which splits it.
    function slash(address account, uint256 bps) external onlyMarket returns (uint256 amount) {
        if (bps > 10_000) revert InvalidBps(bps);
        Member storage m = _members[account];
        amount = (m.stake * bps) / 10_000;
        m.stake -= amount;
        _reweigh(account);
        emit StakeSlashed(account, amount);
        if (amount != 0) Address.sendValue(payable(market), amount);
    }

    function _register(Role role, bytes32 x25519, uint64 declaredGflops) private {
        Member storage m = _members[msg.sender];
        if (m.role != Role.None) revert AlreadyRegistered(msg.sender);
        m.role = role;
        m.x25519 = x25519;
        m.declaredGflops = declaredGflops;
        m.stake = msg.value;
        emit MemberRegistered(msg.sender, role, x25519, declaredGflops, msg.value);
    }

    function _eligible(Member storage m) private view returns (bool) {
        uint256 floor = m.role == Role.Worker ? requiredStake(m.declaredGflops) : minValidatorStake;
        return m.stake >= floor && m.stake > 0;
    }

    function _membersOf(Role role) private view returns (address[] storage) {
        return role == Role.Worker ? _workers : _validators;
    }

    /// @dev Appends `member`, just registered with `stake`, as leaf `i` of `role`'s tree: node i sums
    /// its weight and the nodes below it, (i - lowbit(i), i - 1].
    function _plant(Role role, uint256 i, address member, uint256 stake) private {
        uint256 w = _eligible(_members[member]) ? stake : 0;
        uint256[] storage tree = _tree[role];
        uint256 sum = w;
        uint256 low = i - (i & (~i + 1));
        for (uint256 j = i - 1; j > low; j -= j & (~j + 1)) {
            sum += tree[j - 1];
        }
        tree.push(sum);
        _leaf[member] = i;
        _weight[member] = w;
        _totalWeight[role] += w;
    }

    /// @dev Brings `account`'s weight in line with its stake and eligibility.
    function _reweigh(address account) private {
        Member storage m = _members[account];
        uint256 w = _eligible(m) ? m.stake : 0;
        uint256 old = _weight[account];
        if (w == old) return;
        _weight[account] = w;
        _totalWeight[m.role] = _totalWeight[m.role] - old + w;
        // Every node on the leaf's path already counts its old weight, so none goes below zero.
        uint256[] storage tree = _tree[m.role];
        uint256 n = tree.length;
        for (uint256 i = _leaf[account]; i <= n; i += i & (~i + 1)) tree[i - 1] = tree[i - 1] - old + w;
    }

    /// @dev Adds (or takes back) a left-out leaf's weight in the transient mask of every node that
    /// covers it, and in node 0, the mask's total.
    function _mask(Role role, uint256 leaf, uint256 w, bool add) private {
        uint256 n = _tree[role].length;
        for (uint256 i = leaf; i <= n; i += i & (~i + 1)) _setMaskedNode(role, i, w, add);
        _setMaskedNode(role, 0, w, add);
    }

    function _maskedNode(Role role, uint256 node) private view returns (uint256) {
        return _tload(_maskKey(role, node));
    }

    function _setMaskedNode(Role role, uint256 node, uint256 w, bool add) private {
        bytes32 key = _maskKey(role, node);
        uint256 v = _tload(key);
        _tstore(key, add ? v + w : v - w);
    }

    /// @dev The weight `account` was left out with in the current draw, 0 when it was not.
    function _flag(address account) private view returns (uint256) {
        return _tload(_flagKey(account));
    }

    function _setFlag(address account, uint256 v) private {
        _tstore(_flagKey(account), v);
    }

    /// @dev Transient keys of the current draw: a new draw starts a new key space, so no mask
    /// outlives its draw.
    function _maskKey(Role role, uint256 node) private view returns (bytes32) {
        return keccak256(abi.encode(_drawSession, role, node));
    }

    function _flagKey(address account) private view returns (bytes32) {
        return keccak256(abi.encode(_drawSession, account));
    }

    function _tload(bytes32 key) private view returns (uint256 v) {
        assembly ("memory-safe") {
            v := tload(key)
        }
    }

    function _tstore(bytes32 key, uint256 v) private {
        assembly ("memory-safe") {
            tstore(key, v)
        }
    }

    function _registered(address account) private view returns (Member storage m) {
        m = _members[account];
        if (m.role == Role.None) revert NotRegistered(account);
    }
}

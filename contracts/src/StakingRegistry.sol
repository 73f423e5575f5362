// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";

/// @title StakingRegistry
/// @notice Workers and validators publish an X25519 key and stake ether in proportion to the
/// compute they declare. Stake bound to an unsettled order cannot leave; only the market's
/// settlement can slash it; withdrawals wait out an unbonding delay.
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
    // Every worker and validator ever registered, in order: orders are matched among them and the
    // market draws dispute resolvers from the validators.
    address[] private _workers;
    address[] private _validators;

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
    }

    function registerValidator(bytes32 x25519) external payable {
        if (msg.value < minValidatorStake || msg.value == 0) revert InsufficientStake(minValidatorStake, msg.value);
        _register(Role.Validator, x25519, 0);
        _validators.push(msg.sender);
    }

    function addStake() external payable {
        Member storage m = _registered(msg.sender);
        if (msg.value == 0) revert ZeroAmount();
        m.stake += msg.value;
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
        Member storage m = _members[account];
        return m.role == Role.Worker && m.stake >= requiredStake(m.declaredGflops);
    }

    function isEligibleValidator(address account) external view returns (bool) {
        Member storage m = _members[account];
        return m.role == Role.Validator && m.stake >= minValidatorStake && m.stake > 0;
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

    function _registered(address account) private view returns (Member storage m) {
        m = _members[account];
        if (m.role == Role.None) revert NotRegistered(account);
    }
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ReentrantReceiver
/// @notice A hostile payee for tests: it acts as a client or staker through `execute`, and when
/// paid it calls the paying function again. With `swallow` it catches the failed re-entry so the
/// outer payment can complete; without it the re-entry's failure propagates.
contract ReentrantReceiver {
    address public target;
    bytes public reentryCall;
    bool public swallow;
    uint256 public reentries;
    uint256 public received;

    /// @notice Forwards a call (with value) so this contract becomes the caller.
    function execute(address to, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    /// @notice Calls `to` with `data`, arming one re-entry of the same call on the first payment.
    function attack(address to, bytes calldata data, bool swallow_) external {
        target = to;
        reentryCall = data;
        swallow = swallow_;
        (bool ok, bytes memory ret) = to.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }

    receive() external payable {
        received += msg.value;
        if (reentries != 0) return;
        reentries += 1;
        (bool ok, bytes memory ret) = target.call(reentryCall);
        if (!ok && !swallow) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}

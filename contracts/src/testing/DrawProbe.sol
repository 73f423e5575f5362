// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {StakingRegistry} from "../StakingRegistry.sol";

/// @title DrawProbe
/// @notice Stands in for the market bound to a registry in tests: one call starts a draw, leaves
/// members out, readmits some and picks, as the market does within one transaction; and it slashes.
contract DrawProbe {
    StakingRegistry public immutable registry;

    constructor(StakingRegistry registry_) {
        registry = registry_;
    }

    function pick(
        StakingRegistry.Role role,
        address[] calldata leftOut,
        address[] calldata readmitted,
        uint256 seed
    ) external returns (address member, uint256 weight) {
        registry.beginDraw();
        for (uint256 i = 0; i < leftOut.length; i++) {
            registry.leaveOut(role, leftOut[i]);
        }
        for (uint256 i = 0; i < readmitted.length; i++) {
            registry.readmit(role, readmitted[i]);
        }
        return registry.pick(role, seed);
    }

    function slash(address account, uint256 bps) external {
        registry.slash(account, bps);
    }

    receive() external payable {}
}

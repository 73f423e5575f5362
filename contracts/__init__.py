"""Staking, escrow, proof registry and settlement on an EVM: Solidity sources, artifacts, client."""

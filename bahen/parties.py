"""Names of the parties in a keystore: one identity per role and index."""

CLIENT = "client"
WASP = "wasp"
OPERATOR = "operator"  # deploys the contracts; its address is the devnet treasury


def worker_name(index: int) -> str:
    return f"worker-{index}"


def validator_name(index: int) -> str:
    return f"validator-{index}"

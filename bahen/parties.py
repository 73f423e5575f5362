"""Names of the parties in a keystore (one identity per role and index), and where their work is queued."""

CLIENT = "client"
WASP = "wasp"
OPERATOR = "operator"  # deploys the contracts; its address is the devnet treasury

# The Prefect work pool each role's stages run on (prefect.yaml's deployments name the same pools).
POOL_OF_ROLE = {"client": "control", "worker": "gpu", "validator": "validators", "wasp": "wasp"}
POOLS = tuple(POOL_OF_ROLE.values())


def worker_name(index: int) -> str:
    return f"worker-{index}"


def validator_name(index: int) -> str:
    return f"validator-{index}"


def party_queue(address: str) -> str:
    """The work queue of one party's runs in its role's pool: its address, lowercase."""
    return address.lower()

"""A local network of real parts: contracts deployed, parties funded, workers and validators staked.

Used by the embedded default (an in-process EVM, rebuilt in every process, every party an identity
in the one local keystore), by ``bahen chain deploy`` against anvil, and by ``bahen up``, which
provisions one home per party: there ``keystore_of`` gives each party's own keystore.
"""

from collections.abc import Callable

from contracts.chain import Chain
from contracts.client import Bahen
from contracts.economics import chain_params
from privacy.identity import Keystore

from bahen.parties import CLIENT, OPERATOR, WASP, validator_name, worker_name

WORKERS = 2
VALIDATORS = 3
WORKER_GFLOPS = 1_000  # declared compute of a devnet worker
FUNDING_WEI = 100 * 10**18
CLIENT_FUNDING_WEI = 1_000 * 10**18

PARAMS = chain_params("devnet")


def bootstrap(chain: Chain, keystore: Keystore, *, workers: int = WORKERS, validators: int = VALIDATORS,
              keystore_of: Callable[[str], Keystore] | None = None) -> Bahen:
    """Fund the parties, deploy the contracts (as the operator of ``keystore``) and stake the workers and
    validators. Each party's identity is created in ``keystore_of(name)``, by default ``keystore``."""
    keystore_of = keystore_of or (lambda name: keystore)
    operator = keystore.load_or_create(OPERATOR)
    wasp, client = (keystore_of(n).load_or_create(n) for n in (WASP, CLIENT))
    for identity in (operator, wasp):
        chain.fund(identity.address, FUNDING_WEI)
    chain.fund(client.address, CLIENT_FUNDING_WEI)
    market = Bahen.deploy(chain, operator.account, wasp=wasp.address, treasury=operator.address, params=PARAMS)
    for i in range(workers):
        worker = keystore_of(worker_name(i)).load_or_create(worker_name(i))
        chain.fund(worker.address, FUNDING_WEI)
        market.register_worker(
            worker.account, x25519_public=worker.x25519_public, declared_gflops=WORKER_GFLOPS,
            stake=market.required_stake(WORKER_GFLOPS),
        )
    for i in range(validators):
        validator = keystore_of(validator_name(i)).load_or_create(validator_name(i))
        chain.fund(validator.address, FUNDING_WEI)
        market.register_validator(
            validator.account, x25519_public=validator.x25519_public, stake=PARAMS.min_validator_stake
        )
    return market

from tests.integration.prefect.devnet import devnet, finished_order  # noqa: F401  (fixtures)

"""The root of the errors a user can cause and act on.

Every package has its own root error (privacy, storage, contracts, proof, training), importing
nothing of bahen's; the CLI and the flows print their message, never a traceback.
"""


class BahenError(Exception):
    """An expected failure with a message that says what went wrong and what to do."""


def user_errors() -> tuple[type[Exception], ...]:
    """Every error class whose message is meant for the user, across bahen's packages."""
    from contracts.errors import ChainError
    from privacy.errors import PrivacyError
    from proof.errors import ProofError
    from storage.errors import StorageError
    from training.errors import TrainingError

    return (BahenError, ChainError, PrivacyError, ProofError, StorageError, TrainingError)

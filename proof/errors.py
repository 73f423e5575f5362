"""Failures of proof recording and checking that a user can cause, each saying what to do."""


class ProofError(Exception):
    """Base of every expected proof failure."""


class CheckpointWriteError(ProofError):
    def __init__(self, name: str, cause: BaseException):
        super().__init__(
            f"storing {name} failed ({type(cause).__name__}: {cause}); training stopped so that no step "
            "goes unproven; fix the store and resume from the last stored checkpoint"
        )


class CheckpointUnavailableError(ProofError):
    def __init__(self, name: str, cause: BaseException):
        super().__init__(
            f"{name} could not be read ({type(cause).__name__}: {cause}); it is missing or unreadable in "
            "the store, resume from an earlier checkpoint or restart the task"
        )


class BundleError(ProofError):
    """A proof bundle or one of its artifacts is malformed."""

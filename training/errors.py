"""Failures of training that a user can cause, each saying what to do about it."""


class TrainingError(Exception):
    """Base of every expected training failure."""


class UnknownModelError(TrainingError):
    def __init__(self, name: str, known: tuple[str, ...]):
        super().__init__(f"unknown model {name!r}: the registry has {', '.join(known)}; pick one of those in the order")


class UnknownProfileError(TrainingError):
    def __init__(self, name: str, known: tuple[str, ...]):
        super().__init__(
            f"unknown determinism profile {name!r}: use one of {', '.join(known)} in the order"
        )


class ProfileUnavailableError(TrainingError):
    def __init__(self, name: str, reason: str):
        super().__init__(f"determinism profile {name!r} cannot run on this machine: {reason}")


class DatasetError(TrainingError):
    """A dataset is missing, unknown or not in bahen's table format."""


class DataOrderError(TrainingError):
    """The data order cannot be formed from the given sizes."""


class CheckpointError(TrainingError):
    """A checkpoint cannot be read or does not belong to this training run."""

"""Errors a user of the store can cause; each message names the thing and says what to do."""


class StorageError(Exception):
    """Base class of every storage failure; ``str()`` tells the user what to check."""


class ArtifactError(StorageError):
    """A failure about one artifact; ``artifact`` is the artifact's human name."""

    def __init__(self, artifact: str, message: str) -> None:
        super().__init__(message)
        self.artifact = artifact


class IntegrityError(ArtifactError):
    """The stored bytes do not match the artifact's commitment (sha256) or size."""

    def __init__(self, artifact: str, detail: str) -> None:
        super().__init__(
            artifact,
            f"artifact {artifact} is tampered or truncated: {detail}; "
            "do not use it, and fetch it again from a trusted copy",
        )


class MissingArtifactError(ArtifactError):
    """No object is stored at the artifact's address."""

    def __init__(self, artifact: str, location: str) -> None:
        super().__init__(
            artifact,
            f"artifact {artifact} is not stored at {location}; check the store URL "
            "and that the artifact was uploaded to this store",
        )


class StoreUnavailableError(StorageError):
    """The store cannot be reached or used: endpoint, bucket, credentials or permissions."""


class RetentionUnsupportedError(StorageError):
    """Object lock retention was asked for but the bucket does not support it."""

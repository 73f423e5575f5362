"""Content-addressed artifacts in DVC's remote layout, in a local directory or on S3."""

from storage.errors import (
    ArtifactError,
    IntegrityError,
    MissingArtifactError,
    StorageError,
    StoreUnavailableError,
)
from storage.refs import ArtifactRef
from storage.store import ArtifactStore, open_store

__all__ = [
    "ArtifactError",
    "ArtifactRef",
    "ArtifactStore",
    "IntegrityError",
    "MissingArtifactError",
    "StorageError",
    "StoreUnavailableError",
    "open_store",
]

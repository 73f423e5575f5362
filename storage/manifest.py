"""Manifests: the typed, canonical list of an order's artifacts (datasets, checkpoints, logs).

A manifest is itself stored as an artifact; its canonical bytes (sorted keys, no spaces, UTF-8)
are what parties sign and what the chain records a hash of, so the same manifest always
serialises to the same bytes.
"""

import json

from pydantic import BaseModel, Field, ValidationError, model_validator

from storage.errors import StorageError
from storage.refs import ArtifactRef


class ManifestError(StorageError):
    """A manifest that does not parse or does not validate."""


class MissingRoleError(ManifestError, KeyError):
    """A manifest has no entry with the asked-for role."""

    def __str__(self) -> str:
        return str(self.args[0])


class ArtifactEntry(BaseModel):
    """One artifact of a manifest and the part it plays."""

    role: str = Field(min_length=1, description="What the artifact is, e.g. 'train', 'checkpoint/40'")
    ref: ArtifactRef
    encryption: dict | None = Field(
        default=None, description="Summary of the encryption header (algorithm, chunk size, key id)")


class Manifest(BaseModel):
    """The artifacts of one order step, each under a unique role."""

    kind: str = Field(min_length=1, description="'dataset', 'checkpoints', 'pot-log', ...")
    order_id: str = Field(min_length=1)
    entries: list[ArtifactEntry]
    meta: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_roles(self) -> "Manifest":
        roles = [entry.role for entry in self.entries]
        duplicates = sorted({role for role in roles if roles.count(role) > 1})
        if duplicates:
            raise ValueError(f"roles must be unique, repeated: {', '.join(duplicates)}")
        return self

    def entry(self, role: str) -> ArtifactEntry:
        """The entry playing ``role``; MissingRoleError (a KeyError) names the roles there are."""
        for entry in self.entries:
            if entry.role == role:
                return entry
        present = ", ".join(entry.role for entry in self.entries) or "none"
        raise MissingRoleError(f"{self.kind} manifest of order {self.order_id} has no {role!r} "
                               f"artifact (roles: {present})")

    def to_bytes(self) -> bytes:
        """Canonical JSON: sorted keys, no spaces, UTF-8, no NaN or infinity."""
        try:
            # Python mode: JSON mode would quietly turn NaN into null.
            text = json.dumps(self.model_dump(), sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (ValueError, TypeError) as exc:
            raise ManifestError(f"{self.kind} manifest of order {self.order_id} holds a value "
                                f"with no canonical JSON form (NaN, infinity, non-JSON type): "
                                f"{exc}") from exc
        return text.encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> "Manifest":
        """Parse a manifest; ManifestError says what is wrong with it."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise ManifestError(f"not a valid manifest: {exc}") from exc

"""References to stored artifacts: the DVC address, the commitment and the size."""

from pydantic import BaseModel, Field


class ArtifactRef(BaseModel, frozen=True):
    """A content-addressed artifact.

    ``md5`` is only the address DVC uses to find the object; ``sha256`` is the commitment that
    manifests and the chain record, and that every read checks.
    """

    name: str = Field(description="Human name used in messages, e.g. 'order 0xab12…/checkpoint step 40'")
    md5: str = Field(pattern=r"^[0-9a-f]{32}$", description="DVC address: md5 of the stored bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Commitment: sha256 of the stored bytes")
    size: int = Field(ge=0, description="Stored size in bytes")
    is_dir: bool = Field(
        default=False,
        description="A directory: the stored bytes are its DVC `.dir` listing, kept at `<md5>.dir`",
    )

"""Directory artifacts: DVC's `.dir` listing, and bahen's listing that commits to sha256s.

DVC 3 stores a directory as ``files/md5/<md5>.dir``: the JSON list of ``{"md5", "relpath"}``
sorted by relpath, exactly as ``json.dumps(..., sort_keys=True)`` writes it (stock DVC rejects
entries with any other key). md5 alone is no commitment, so bahen also stores its own canonical
listing with each entry's sha256 and size; a directory's ``ArtifactRef`` carries the md5 of the
DVC listing (its DVC address) and the sha256 and size of bahen's listing (its commitment).
Both listings are derived from the same entries, so each reader can check one against the other.
"""

import hashlib
import json
import posixpath
from collections.abc import Mapping

from pydantic import BaseModel, Field, TypeAdapter

from storage.errors import IntegrityError
from storage.refs import ArtifactRef


class _Row(BaseModel, strict=True, extra="forbid"):
    """One entry of bahen's listing, as :func:`encode_listing` writes it."""

    md5: str
    relpath: str
    sha256: str
    size: int = Field(ge=0)


# pydantic-core's parser, not json.loads: it stops at 200 levels of nesting whatever Python's
# recursion limit is, so a listing nested deep enough to overflow the C stack raises instead.
_LISTING = TypeAdapter(list[_Row])


def check_relpath(relpath: str, directory: str) -> None:
    """Reject paths that DVC would place outside the directory or could not represent."""
    parts = relpath.split("/")
    if (not relpath or relpath.startswith("/") or "\\" in relpath
            or any(part in ("", ".", "..") for part in parts)
            or posixpath.normpath(relpath) != relpath):
        raise ValueError(f"directory {directory}: entry path {relpath!r} must be a relative POSIX "
                         "path without '.', '..' or empty parts")


def _sorted(entries: Mapping[str, ArtifactRef]) -> list[tuple[str, ArtifactRef]]:
    return sorted(entries.items())


def encode_dvc(entries: Mapping[str, ArtifactRef]) -> bytes:
    """The DVC 3 `.dir` object for ``entries`` (byte-identical to what ``dvc add`` writes)."""
    listing = [{"md5": ref.md5, "relpath": relpath} for relpath, ref in _sorted(entries)]
    return json.dumps(listing, sort_keys=True).encode("utf-8")


def encode_listing(entries: Mapping[str, ArtifactRef]) -> bytes:
    """bahen's canonical listing: relpath, md5, sha256 and size of every entry."""
    listing = [{"md5": ref.md5, "relpath": relpath, "sha256": ref.sha256, "size": ref.size}
               for relpath, ref in _sorted(entries)]
    return json.dumps(listing, sort_keys=True, separators=(",", ":")).encode("utf-8")


def decode_listing(data: bytes, ref: ArtifactRef) -> dict[str, ArtifactRef]:
    """Parse bahen's listing of the directory ``ref`` and check it against ``ref.md5``.

    Entries are named ``<directory name>/<relpath>``.
    """
    try:
        rows = _LISTING.validate_json(data)
        for row in rows:
            check_relpath(row.relpath, ref.name)
        entries = {row.relpath: ArtifactRef(name=f"{ref.name}/{row.relpath}", md5=row.md5, sha256=row.sha256,
                                            size=row.size) for row in rows}
    except ValueError as exc:  # pydantic's ValidationError is one
        raise IntegrityError(ref.name, f"its directory listing does not parse ({exc})") from exc
    dvc_md5 = hashlib.md5(encode_dvc(entries), usedforsecurity=False).hexdigest()
    if dvc_md5 != ref.md5:
        raise IntegrityError(ref.name, f"its listing gives DVC address {dvc_md5}, expected {ref.md5}")
    return entries

"""The store interface: content-addressed artifacts in DVC 3's remote layout.

An object lives at ``files/md5/<2 hex>/<30 hex>`` under the store's root, so the root is a valid
DVC remote. md5 is only where DVC looks; what bahen trusts is the sha256 and size in the
``ArtifactRef``, checked on every read. Backends implement four primitives; the shared loop here
does the hashing, verification and directory listings.
"""

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping

from storage import dirs
from storage.digest import CHUNK_SIZE
from pydantic import ValidationError

from storage.errors import IntegrityError, MissingArtifactError, StorageError
from storage.refs import ArtifactRef


def object_key(ref: ArtifactRef) -> str:
    """Where the artifact's committed bytes live, relative to the store root.

    A file sits at its DVC 3 address; a directory's committed bytes are bahen's listing, kept
    beside DVC's tree and addressed by its sha256 (see ``storage.dirs``).
    """
    if ref.is_dir:
        return f"dirs/{ref.sha256[:2]}/{ref.sha256[2:]}.json"
    return dvc_key(ref.md5)


def dvc_key(md5: str, *, is_dir: bool = False) -> str:
    """DVC 3's object path for an md5 address (``.dir`` suffixed for directory listings)."""
    return f"files/md5/{md5[:2]}/{md5[2:]}{'.dir' if is_dir else ''}"


# A pointer holds one ArtifactRef as JSON: a few hundred bytes; more is not a pointer.
_POINTER_BYTES = 4096
_SEGMENT = r"[a-z0-9][a-z0-9._-]*"
_POINTER_NAME = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")
_OWNER = re.compile(rf"^{_SEGMENT}$")


def party_folder(party: str) -> str:
    """``party`` (an account address) as the name of its folders in a store: lowercased, one path segment."""
    if len(party) > 64 or not _OWNER.match(party.lower()):
        raise ValueError(f"party {party!r} must be one path segment of letters, digits, '.', '_' and '-'")
    return party.lower()


def staging_folder(party: str | None) -> str:
    """Where a store using ``party``'s credentials stages its uploads: ``staging/<party>/``, or ``staging/``
    for a store without per-party policies."""
    return f"staging/{party_folder(party)}/" if party else "staging/"


def pointer_key(owner: str, name: str) -> str:
    """Where ``owner``'s pointer ``name`` lives: ``pointers/<owner>/<name>``.

    Each party names artifacts in its own folder, the only one its store policy lets it write
    (``storage.policy``); ValueError for an owner or a name that is no plain path.
    """
    if len(name) > 200 or not _POINTER_NAME.match(name):
        raise ValueError(f"pointer name {name!r} must be lowercase path segments of letters, digits, '.', '_' and '-'")
    return f"pointers/{party_folder(owner)}/{name}"


class ArtifactStore(ABC):
    """A place holding write-once, content-addressed artifacts.

    ``url`` is usable as a DVC remote url: an absolute directory path or ``s3://bucket/prefix``.
    """

    url: str

    @abstractmethod
    def put(self, data: bytes | Iterable[bytes], *, name: str) -> ArtifactRef:
        """Store ``data`` (bytes or an iterable of chunks, read once) and return its reference.

        The md5 address, sha256 commitment and size come from the same pass over the bytes.
        Objects are write-once: storing content that is already there changes nothing.
        """

    @abstractmethod
    def _stored_size(self, key: str) -> int | None:
        """Size of the object at ``key``, or None when there is none."""

    @abstractmethod
    def _read(self, key: str, ref: ArtifactRef, chunk_size: int) -> Iterator[bytes]:
        """Stream the object at ``key``; raise MissingArtifactError naming ``ref`` if absent."""

    @abstractmethod
    def _put_small(self, key: str, data: bytes) -> None:
        """Write-once store of a small object (a `.dir` listing) whose address is known."""

    def get(self, ref: ArtifactRef) -> bytes:
        """Return the artifact's bytes after checking their size and sha256 against ``ref``."""
        return b"".join(self.iter_chunks(ref))

    def verify(self, ref: ArtifactRef) -> None:
        """Re-hash the stored artifact in chunks; IntegrityError or MissingArtifactError if it is not as committed."""
        for _ in self.iter_chunks(ref):
            pass

    def iter_chunks(self, ref: ArtifactRef, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Stream the artifact's bytes; raise IntegrityError at the end if they do not match.

        The chunks are untrusted until the iteration finishes without an error.
        """
        sha256, size = hashlib.sha256(), 0
        for chunk in self._read(object_key(ref), ref, chunk_size):
            size += len(chunk)
            if size > ref.size:
                raise IntegrityError(ref.name, f"more than the committed {ref.size} bytes are stored")
            sha256.update(chunk)
            yield chunk
        if size != ref.size:
            raise IntegrityError(ref.name, f"{size} bytes stored, {ref.size} committed")
        if sha256.hexdigest() != ref.sha256:
            raise IntegrityError(ref.name, f"sha256 is {sha256.hexdigest()}, committed {ref.sha256}")

    def exists(self, ref: ArtifactRef) -> bool:
        """Whether the artifact is stored (its bytes are not read)."""
        if ref.is_dir and self._stored_size(dvc_key(ref.md5, is_dir=True)) is None:
            return False
        return self._stored_size(object_key(ref)) is not None

    def put_dir(self, entries: Mapping[str, ArtifactRef], *, name: str) -> ArtifactRef:
        """Store a directory of already stored artifacts, keyed by relative POSIX path.

        Writes DVC's `.dir` object (so ``dvc pull`` restores the tree) and bahen's listing (which
        commits to every entry's sha256); returns the directory's reference.
        """
        for relpath, entry in entries.items():
            dirs.check_relpath(relpath, name)
            if entry.is_dir:
                raise ValueError(f"directory {name}: entry {relpath} is itself a directory; "
                                 "list its files under their full relative paths instead")
            if not self.exists(entry):
                raise MissingArtifactError(entry.name, f"{self.url} (needed by directory {name})")
        dvc_listing, listing = dirs.encode_dvc(entries), dirs.encode_listing(entries)
        ref = ArtifactRef(name=name, md5=hashlib.md5(dvc_listing, usedforsecurity=False).hexdigest(),
                          sha256=hashlib.sha256(listing).hexdigest(), size=len(listing), is_dir=True)
        # DVC's listing first: once bahen's listing is visible, the whole directory is.
        self._put_small(dvc_key(ref.md5, is_dir=True), dvc_listing)
        self._put_small(object_key(ref), listing)
        return ref

    def list_dir(self, ref: ArtifactRef) -> dict[str, ArtifactRef]:
        """The entries of a directory artifact, after verifying its listing against ``ref``."""
        if not ref.is_dir:
            raise ValueError(f"artifact {ref.name} is a file, not a directory; use get() for it")
        return dirs.decode_listing(self.get(ref), ref)

    def put_pointer(self, owner: str, name: str, ref: ArtifactRef) -> None:
        """Name ``ref`` under ``name`` in ``owner``'s folder, for a reader who knows both but not the address.

        Write-once like every object: naming the same artifact again changes nothing, naming
        another raises :class:`IntegrityError`. A pointer is an index, not a commitment: a reader
        trusts what it points to only after checking that against a signature or the chain.
        """
        data = ref.model_dump_json().encode()
        if len(data) > _POINTER_BYTES:
            raise StorageError(f"pointer {name}: a pointer holds at most {_POINTER_BYTES} bytes, and the reference to "
                               f"{ref.name[:80]!r} is {len(data)}; nothing was written. Give the artifact a shorter name")
        key = pointer_key(owner, name)
        if self._stored_size(key) is not None:
            if self.get_pointer(owner, name) != ref:
                raise IntegrityError(f"pointer {name}", f"it already names another artifact than {ref.name}")
            return
        self._put_small(key, data)

    def get_pointer(self, owner: str, name: str) -> ArtifactRef:
        """The artifact ``owner`` named ``name`` (:class:`MissingArtifactError` if it named none so)."""
        key, what = pointer_key(owner, name), f"pointer {name} of {party_folder(owner)}"
        size = self._stored_size(key)
        if size is None:
            raise MissingArtifactError(what, f"{self.url}/{key}")
        if size > _POINTER_BYTES:
            raise IntegrityError(what, f"{size} bytes are stored, more than a pointer holds")
        # The placeholder only names the object for the backend's errors; nothing is checked against it.
        placeholder = ArtifactRef(name=what, md5="0" * 32, sha256="0" * 64, size=size)
        data = b"".join(self._read(key, placeholder, _POINTER_BYTES))
        try:
            return ArtifactRef.model_validate_json(data[:_POINTER_BYTES])
        except ValidationError:
            raise IntegrityError(what, "it does not hold an artifact reference") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def open_store(url: str, *, endpoint_url: str | None = None, region: str | None = None,
               access_key: str | None = None, secret_key: str | None = None,
               party: str | None = None) -> ArtifactStore:
    """Open the store at ``url``: ``s3://bucket/prefix`` is S3 (or MinIO at ``endpoint_url``),
    anything else (a path or ``file://`` URL) a local directory.

    S3 credentials not given here come from boto3's usual sources (environment, profile). ``party``
    is whose credentials they are: an S3 store stages its uploads under ``staging/<party>/``, the
    staging folder that party's store policy lets it write and clean (``storage.policy``).
    """
    # Backends are imported here so that local use never pays for importing boto3.
    if url.startswith("s3://"):
        from storage.s3 import S3Store

        return S3Store(url, endpoint_url=endpoint_url, region=region,
                       access_key=access_key, secret_key=secret_key, party=party)
    from storage.local import LocalStore

    return LocalStore(url)

"""A store in a local directory: the embedded default, and a valid DVC local remote."""

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from storage.digest import Digest, iter_views
from storage.errors import IntegrityError, MissingArtifactError, StoreUnavailableError
from storage.refs import ArtifactRef
from storage.store import ArtifactStore, object_key


def _root_path(url: str) -> Path:
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    return Path(url).expanduser()


class LocalStore(ArtifactStore):
    """Objects as read-only files under ``root/files/md5/``.

    A put streams into a temporary file under the root, then hard-links it to its content
    address: the link appears whole or not at all, and fails if the address is taken, so an object
    is never partial and never overwritten.
    """

    def __init__(self, url: str) -> None:
        self.root = _root_path(url).resolve()
        self.url = str(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot create the store directory {self.root}: {exc.strerror}; "
                "check the path and its permissions") from exc

    def put(self, data: bytes | Iterable[bytes], *, name: str) -> ArtifactRef:
        """Stream ``data`` into the store once, hashing it on the way; see ArtifactStore.put."""
        fd, tmp_name = self._temp_file()
        try:
            with os.fdopen(fd, "wb") as tmp:
                ref = Digest().consume(iter_views(data), tmp.write).ref(name)
            self._link(Path(tmp_name), self.root / object_key(ref))
        finally:
            os.unlink(tmp_name)
        stored = self._stored_size(object_key(ref))
        if stored != ref.size:
            # Same md5, another size: someone replaced the object at this address.
            raise IntegrityError(name, f"its address already holds {stored} bytes, not {ref.size}")
        return ref

    def _temp_file(self) -> tuple[int, str]:
        # Same filesystem as the objects, so the final link is atomic.
        try:
            return tempfile.mkstemp(dir=self.root, prefix=".put-", suffix=".tmp")
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot write to the store directory {self.root}: {exc.strerror}; "
                "check its permissions and free space") from exc

    @staticmethod
    def _link(tmp: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Read-only like DVC's own cache: a stored object is never edited in place.
        tmp.chmod(0o444)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            pass  # same address, same content: write-once makes this a no-op

    def _stored_size(self, key: str) -> int | None:
        try:
            return (self.root / key).stat().st_size
        except FileNotFoundError:
            return None

    def _read(self, key: str, ref: ArtifactRef, chunk_size: int) -> Iterator[bytes]:
        try:
            handle = open(self.root / key, "rb")
        except FileNotFoundError:
            raise MissingArtifactError(ref.name, str(self.root / key)) from None
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def _put_small(self, key: str, data: bytes) -> None:
        fd, tmp_name = self._temp_file()
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
            self._link(Path(tmp_name), self.root / key)
        finally:
            os.unlink(tmp_name)

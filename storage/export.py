"""Auditor workspaces: a directory that stock DVC can pull an order's pinned artifacts into.

The workspace holds ``.dvc/config`` (the store as default remote, with ``verify = true`` so DVC
re-hashes every download: without it a replaced object would be accepted), one ``.dvc`` file per
artifact carrying its md5 address and, as metadata, its sha256 commitment, ``params.yaml``, and the
``dvc.yaml`` of the stages an auditor reproduces, when there are any.
"""

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from storage.dirs import check_relpath
from storage.errors import StorageError
from storage.refs import ArtifactRef

REMOTE = "store"


class ExportError(StorageError):
    """The workspace cannot be written where asked."""


def dvc_config(store_url: str, endpoint_url: str | None = None) -> str:
    """The text of ``.dvc/config`` for a repo without git whose default remote is the store."""
    url = store_url if store_url.startswith("s3://") else str(Path(
        store_url.removeprefix("file://")).expanduser().resolve())
    lines = ["[core]", "    no_scm = True", f"    remote = {REMOTE}",
             f"['remote \"{REMOTE}\"']", f"    url = {url}", "    verify = true"]
    if endpoint_url:
        lines.append(f"    endpointurl = {endpoint_url}")
    return "\n".join(lines) + "\n"


def dvc_file(path: str, ref: ArtifactRef) -> str:
    """The text of the ``.dvc`` file that pins ``ref`` at ``path`` (relative to the workspace)."""
    out: dict = {"md5": f"{ref.md5}.dir" if ref.is_dir else ref.md5}
    if not ref.is_dir:
        out["size"] = ref.size  # a directory's DVC size is its files' total, not its listing's
    out.update({"hash": "md5", "path": Path(path).name})
    meta = {"name": ref.name, "sha256": ref.sha256}
    return yaml.safe_dump({"outs": [out], "meta": meta}, sort_keys=False, allow_unicode=True)


def pinned_ref(dvc_path: Path) -> ArtifactRef:
    """The artifact a ``.dvc`` file written by :func:`dvc_file` pins (a file's; :class:`ExportError` for
    a missing file or one of another form)."""
    try:
        pinned = yaml.safe_load(Path(dvc_path).read_text())
        out, meta = pinned["outs"][0], pinned["meta"]
        return ArtifactRef(name=meta["name"], md5=out["md5"], sha256=meta["sha256"], size=out["size"])
    except FileNotFoundError:
        raise ExportError(f"{dvc_path} does not exist; export the workspace again") from None
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError, ValueError):
        raise ExportError(f"{dvc_path} is not a .dvc file pinning one artifact; export the workspace again") from None


def export_dvc_workspace(store_url: str, artifacts: Mapping[str, ArtifactRef], directory: Path, *,
                         endpoint_url: str | None = None, params: dict | None = None,
                         stages: dict | None = None) -> Path:
    """Write a DVC workspace in ``directory`` (new or empty) pinning ``artifacts`` by path.

    ``dvc pull`` there fetches exactly the committed ciphertexts, each under its path; a
    directory artifact comes back as a tree. ``stages`` become its ``dvc.yaml`` (``dvc repro``
    runs them). The workspace is built beside ``directory`` and renamed into place, so it appears
    complete or not at all. Returns the workspace directory.
    """
    directory = Path(directory).expanduser().resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ExportError(f"cannot export into {directory}: it exists and is not an empty "
                          "directory; choose a new directory")
    for path in artifacts:
        check_relpath(path, str(directory))
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        files = {".dvc/config": dvc_config(store_url, endpoint_url),
                 ".dvc/.gitignore": "/config.local\n/tmp\n/cache\n",
                 "params.yaml": yaml.safe_dump(params or {}, sort_keys=True, allow_unicode=True)}
        if stages:
            files["dvc.yaml"] = yaml.safe_dump({"stages": stages}, sort_keys=False, allow_unicode=True)
        files.update({f"{path}.dvc": dvc_file(path, ref) for path, ref in artifacts.items()})
        for relpath, text in files.items():
            (staging / relpath).parent.mkdir(parents=True, exist_ok=True)
            (staging / relpath).write_text(text, encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp makes it private; a workspace is meant to be shared
        os.rename(staging, directory)  # replaces an empty directory atomically
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory

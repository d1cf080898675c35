"""Fetch the demo data sets into data/<name>: from a local mirror, else upstream GitHub.

Every file is checked against the manifest shipped in peft_utils/data/manifests/<name>.json
(relative path, sha256, upstream path, pinned commit). The copy is built in a temporary
folder next to the destination and renamed into place, so an interrupted or failed copy
never replaces a good one; a destination that already verifies is left alone.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

from peft_utils.data.errors import DataError

RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
_CHUNK = 1 << 20


def manifest_names() -> tuple[str, ...]:
    """What `data prepare` can fetch: one shipped manifest per data set (the registry's
    `prepare` names the classification sets'; ntrex is the MT study's)."""
    folder = resources.files("peft_utils.data").joinpath("manifests")
    return tuple(sorted(p.name.removesuffix(".json") for p in folder.iterdir()
                        if p.name.endswith(".json")))


def load_manifest(name: str) -> dict:
    if name not in manifest_names():
        raise DataError(name, "unknown data set", fix=f"use one of {', '.join(manifest_names())}")
    text = resources.files("peft_utils.data").joinpath(f"manifests/{name}.json").read_text()
    return json.loads(text)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def build_manifest(name: str, folder: str | Path, repo: str, upstream: dict[str, str | None],
                   commit: str | None = None) -> dict:
    """A manifest for every file under `folder` (how the shipped ones were generated).

    `upstream` maps a relative path to its path in `repo` at `commit` (read from the
    folder's SOURCE_COMMIT when not given); None marks files written locally (SOURCE_COMMIT)."""
    folder = Path(folder)
    commit = commit or (folder / "SOURCE_COMMIT").read_text().strip()
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel not in upstream:
            raise KeyError(f"{rel}: no upstream path given")
        files.append({"path": rel, "sha256": sha256_file(path), "size": path.stat().st_size,
                      "upstream": upstream[rel]})
    return {"name": name, "repo": repo, "commit": commit, "files": files}


def verify(folder: Path, manifest: dict) -> list[str]:
    """Relative paths that are missing or differ from the manifest (empty: a good copy)."""
    bad = []
    for entry in manifest["files"]:
        path = folder / entry["path"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            bad.append(entry["path"])
    return bad


def default_mirror(name: str) -> Path | None:
    """../shared/data/<name> next to the repository root, or next to the working folder."""
    repo_root = Path(__file__).resolve().parents[2]
    for base in (repo_root, Path.cwd()):
        candidate = base.parent / "shared" / "data" / name
        if candidate.is_dir():
            return candidate
    return None


def prepare(name: str, dest_root: str | Path = "data", mirror: str | Path | None = None, *,
            manifest: dict | None = None) -> Path:
    """Make `dest_root/name` a verified copy of data set `name` and return its path."""
    manifest = manifest or load_manifest(name)
    dest = Path(dest_root) / name
    if dest.is_dir() and not verify(dest, manifest):
        return dest
    source = Path(mirror) if mirror is not None else default_mirror(name)
    if mirror is not None and not source.is_dir():
        raise DataError(source, "mirror folder not found",
                        fix="pass an existing --mirror or leave it out to download")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=dest.parent))
    try:
        for entry in manifest["files"]:
            target = tmp / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if source is not None:
                _copy_verified(source / entry["path"], target, entry["sha256"])
            elif entry["upstream"] is None:
                _write_generated(entry, target, manifest)
            else:
                _download_verified(manifest, entry, target)
        _swap_into_place(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _copy_verified(src: Path, dst: Path, expected: str) -> None:
    if not src.is_file():
        raise DataError(src, "missing from the mirror", fix="restore the mirror or remove "
                        "--mirror to download from upstream")
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for block in iter(lambda: fin.read(_CHUNK), b""):
            digest.update(block)
            fout.write(block)
    _check_digest(src, digest.hexdigest(), expected)


def _check_digest(src, actual: str, expected: str) -> None:
    if actual != expected:
        raise DataError(src, f"sha256 mismatch: expected {expected}, got {actual}",
                        fix="the file differs from the pinned release; restore it")


def _write_generated(entry: dict, target: Path, manifest: dict) -> None:
    # Only SOURCE_COMMIT is generated; its content is the pinned commit.
    target.write_text(manifest["commit"] + "\n")
    _check_digest(target, sha256_file(target), entry["sha256"])


def _download_verified(manifest: dict, entry: dict, target: Path) -> None:
    url = RAW_URL.format(repo=manifest["repo"], commit=manifest["commit"], path=entry["upstream"])
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as fout:
            for block in iter(lambda: response.read(_CHUNK), b""):
                digest.update(block)
                fout.write(block)
    except (urllib.error.URLError, OSError) as err:
        raise DataError(url, f"download failed: {err}",
                        fix="check the network, or pass --mirror with a local copy") from None
    _check_digest(url, digest.hexdigest(), entry["sha256"])


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished copy into place; an old copy is moved aside first and restored
    if the rename fails, so dest is never left half-written."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except OSError:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

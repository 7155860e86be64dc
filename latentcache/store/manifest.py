"""``manifest.json``: the store's dataset card, versioned, written last, keys sorted.

It is what another team reads before trusting a store: the codec and its weights' sha256,
library versions, the dataset and its index's sha256, per split counts and bit rates, per
shard its files, sample count, bytes and sha256, every failure with its reason, and the
command that made it. ``indexed = stored + failed`` holds per split and in total.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from latentcache.atomic import write_json_atomic
from latentcache.errors import StoreCorruptError

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "STORE_FORMAT",
    "file_sha256",
    "file_entry",
    "write_json_atomic",
    "write_manifest",
    "read_manifest",
    "library_versions",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
STORE_FORMAT = "latentcache-store"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entry(path: Path, root: Path) -> dict:
    return {
        "path": path.relative_to(root).as_posix(),
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
    }


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("latentcache", "compressai", "torch", "zarr", "webdataset", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_manifest(store_path: Path, manifest: dict) -> Path:
    manifest = {"format": STORE_FORMAT, "version": MANIFEST_VERSION, **manifest}
    path = store_path / MANIFEST_NAME
    write_json_atomic(path, manifest)
    return path


def read_manifest(store_path: str | os.PathLike) -> dict:
    path = Path(store_path) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no {MANIFEST_NAME} in {store_path}: not a finished latentcache store"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StoreCorruptError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != STORE_FORMAT:
        raise StoreCorruptError(f"{path} is not a latentcache store manifest")
    if manifest.get("version", 0) > MANIFEST_VERSION:
        raise StoreCorruptError(
            f"{path} has manifest version {manifest['version']}; this latentcache reads up to {MANIFEST_VERSION}"
        )
    return manifest

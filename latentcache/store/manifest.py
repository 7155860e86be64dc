"""``manifest.json``: the store's dataset card, versioned, written last, keys sorted.

It is what another team reads before trusting a store: the codec and its weights' sha256,
library versions, the dataset and its index's sha256, per split counts and bit rates, per
shard its files, sample count, bytes and sha256, every failure with its reason, and the
command that made it. ``indexed = stored + failed`` holds per split and in total.

Reading one is reading untrusted input::

    manifest.json bytes (bounded) ─► JSON ─► format, version (newer: one-line refusal)
                                  ─► schema/manifest-v<version>.json (JSON Schema draft-07,
                                     compiled once by fastjsonschema) ─► dict

Writers write version 2; readers read 1 and 2 and tell them apart by ``version`` alone.
Version 2 adds ``task`` (``{"name": "classification", ...}`` plus the task's own keys),
``inputs`` (the latent arrays a model receives, in order) and each shard's ``encoder`` record.
A version 1 manifest is a classification store whose inputs are ``y_hat`` and ``scales_hat``:
:func:`manifest_task` and :func:`manifest_inputs` answer for both versions.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path

from latentcache.atomic import write_json_atomic
from latentcache.errors import StoreCorruptError, StoreNotFoundError

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "STORE_FORMAT",
    "file_sha256",
    "sha256_bounded",
    "file_entry",
    "write_json_atomic",
    "write_manifest",
    "read_manifest",
    "load_manifest",
    "parse_manifest",
    "manifest_schema",
    "manifest_task",
    "manifest_inputs",
    "library_versions",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)
# What a version 1 manifest means: it predates ``task`` and ``inputs``.
_V1_TASK = {"name": "classification"}
_V1_INPUTS = ("y_hat", "scales_hat")
STORE_FORMAT = "latentcache-store"
MAX_MANIFEST_BYTES = 1 << 30


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bounded(f, limit: int, chunk: int = 1 << 20) -> tuple[str, int]:
    """(sha256, bytes read) of a binary stream, reading at most ``limit + 1`` bytes."""
    h, n = hashlib.sha256(), 0
    while block := f.read(min(chunk, limit + 1 - n)):
        h.update(block)
        n += len(block)
    return h.hexdigest(), n


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


def read_manifest(store: str | os.PathLike) -> dict:
    """The validated manifest of the store at a local path or URL."""
    return load_manifest(store)[0]


def load_manifest(store) -> tuple[dict, bytes]:
    """(validated manifest, its raw bytes) of a store path, URL or StoreLocation."""
    from latentcache.store.location import locate

    loc = locate(store)
    where = f"{loc.url.rstrip('/')}/{MANIFEST_NAME}"
    try:
        with loc.open(MANIFEST_NAME) as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError):
        raise StoreNotFoundError(
            f"no {MANIFEST_NAME} in {loc.url}: not a finished latentcache store"
        ) from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise StoreCorruptError(f"{where}: over the {MAX_MANIFEST_BYTES}-byte limit")
    return parse_manifest(raw, where), raw


@functools.cache
def manifest_schema(version: int = MANIFEST_VERSION) -> dict:
    """The JSON schema of manifest ``version``, shipped in ``latentcache/store/schema/``."""
    text = resources.files("latentcache.store").joinpath(f"schema/manifest-v{version}.json")
    return json.loads(text.read_text())


def parse_manifest(raw: bytes, where: str = MANIFEST_NAME) -> dict:
    """Parse and validate manifest bytes; StoreCorruptError with one line naming what is wrong."""
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreCorruptError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise StoreCorruptError(f"{where} is not a latentcache store manifest")
    version = manifest.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > MANIFEST_VERSION:
        raise StoreCorruptError(
            f"{where}: manifest schema version {version} is newer than this latentcache reads "
            f"(up to {MANIFEST_VERSION}); upgrade latentcache to read this store"
        )
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise StoreCorruptError(
            f"{where}: manifest version {version!r}; valid: 1..{MANIFEST_VERSION}"
        )
    _validate(manifest, version, where)
    return manifest


def manifest_task(manifest: dict) -> dict:
    """The store's task: ``{"name": ..., <the task's own keys>}`` (version 1: classification)."""
    return dict(manifest["task"] if manifest["version"] >= 2 else _V1_TASK)


def manifest_inputs(manifest: dict) -> list[str]:
    """The latent arrays a model receives, in order (version 1: y_hat, scales_hat)."""
    return list(manifest["inputs"] if manifest["version"] >= 2 else _V1_INPUTS)


@functools.cache
def _validator(version: int):
    import fastjsonschema

    return fastjsonschema.compile(manifest_schema(version))


def _validate(manifest: dict, version: int, where: str) -> None:
    import fastjsonschema

    try:
        _validator(version)(manifest)
    except fastjsonschema.JsonSchemaValueException as exc:
        at = "/".join(str(p) for p in exc.path[1:]) or "(top level)"
        what = exc.message.split(" ", 1)[1] if exc.message.startswith("data") else exc.message
        raise StoreCorruptError(
            f"{where}: does not match manifest schema v{version} at {at}: {what[:200]}"
        ) from None

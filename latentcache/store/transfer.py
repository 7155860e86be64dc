"""``pull`` and ``push``: copy a store, or some of its splits, file by file with integrity checks.

::

    source manifest (schema-validated) ─► plan: every file the manifest lists for the chosen
      splits (+ Zarr metadata a reader needs that the manifest does not list)
      └► per file: already intact at the destination (size + sha256)? skip
                   else stream it (bounded by its declared bytes, hashed on the way)
                        ─► sha256 and size == manifest ? keep (local: rename from .part)
                                                       : refuse, naming the file
      └► manifest.json last: the source's bytes for a whole store; for --split, a manifest
         of those splits (counts reconcile) recording the source URL and manifest sha256

Paths come from the (untrusted) manifest: absolute or ``..`` paths are refused before any
byte is written, so nothing lands outside the destination. Re-running the same command
resumes: intact files are skipped. A copy is finished when the destination has a manifest.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field

from latentcache.errors import ConfigError, StoreCorruptError, StoreExistsError
from latentcache.store.location import StoreLocation, check_rel, locate
from latentcache.store.manifest import MANIFEST_NAME, load_manifest, parse_manifest
from latentcache.store.wds_store import WDS_DIR
from latentcache.store.zarr_store import ZARR_DIR

__all__ = [
    "TransferConfig",
    "TransferResult",
    "FileCopy",
    "run_pull",
    "run_push",
    "plan_files",
    "subset_manifest",
]

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_METADATA_BYTES = 1 << 20  # a zarr.json the manifest does not list
MARKER = ".latentcache/copy.json"


@dataclass(frozen=True)
class TransferConfig:
    src: str
    dest: str
    splits: tuple[str, ...] = ()  # () = every split, the manifest copied byte for byte
    progress: bool = True  # a progress bar in bytes (on a terminal)
    jobs: int = 8  # files in flight at once (latency, not bandwidth, bounds small files)

    def __post_init__(self) -> None:
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise ConfigError(f"jobs={self.jobs!r}: should be an integer >= 1")


@dataclass
class TransferResult:
    dest: str
    files: int = 0
    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0
    splits: list[str] = field(default_factory=list)
    manifest_sha256: str = ""


@dataclass(frozen=True)
class FileCopy:
    """One file to copy; ``sha256`` None only for Zarr metadata the manifest does not list."""

    path: str
    bytes: int | None
    sha256: str | None


def run_pull(config: TransferConfig) -> TransferResult:
    """Copy the store at ``config.src`` (path or URL) to ``config.dest``; see module docstring."""
    return _transfer(config)


def run_push(config: TransferConfig) -> TransferResult:
    """Copy a store to ``config.dest``, typically an object store URL (s3://, gs://)."""
    return _transfer(config)


def _transfer(config: TransferConfig) -> TransferResult:
    src, dest = locate(config.src), locate(config.dest)
    dest.writable()
    if src.url.rstrip("/") == dest.url.rstrip("/"):
        raise ConfigError(f"source and destination are the same store: {src.url}")
    manifest, raw = load_manifest(src)
    source_sha = hashlib.sha256(raw).hexdigest()
    splits = _chosen_splits(manifest, config.splits)
    plan = plan_files(manifest, splits)
    _claim(dest, src.url, source_sha)
    result = TransferResult(dest=dest.url, files=len(plan), splits=splits)
    with _progress(sum(f.bytes or 0 for f in plan), config.progress) as bar:
        for item, copied in _copy_all(src, dest, plan, bar, config.jobs):
            result.copied += copied
            result.skipped += not copied
            result.bytes_copied += copied and (item.bytes or 0)
    out = raw  # a whole store: the source manifest, byte for byte
    if config.splits:
        sub = subset_manifest(manifest, splits, src.url, source_sha)
        out = (json.dumps(sub, sort_keys=True, indent=1) + "\n").encode()
        parse_manifest(out, f"{dest.url}/{MANIFEST_NAME}")
    _write_bytes(dest, MANIFEST_NAME, out)
    result.manifest_sha256 = hashlib.sha256(out).hexdigest()
    return result


def _chosen_splits(manifest: dict, wanted: tuple[str, ...]) -> list[str]:
    available = list(manifest["splits"])
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise ConfigError(f"unknown split(s) {unknown}; the store has {available}")
    return [s for s in available if s in wanted] if wanted else available


def _split_of(path: str, splits: list[str]) -> str | None:
    """The split a store path belongs to (``zarr/<split>/...`` or ``wds/<split>-*.tar``)."""
    parts = path.split("/")
    for s in splits:
        if parts[0] == ZARR_DIR and len(parts) > 2 and parts[1] == s:
            return s
        if parts[0] == WDS_DIR and len(parts) == 2 and parts[1].startswith(f"{s}-"):
            return s
    return None


def _listed(node, out: list[dict]) -> list[dict]:
    """Every file entry (path, bytes, sha256) anywhere in a manifest section."""
    if isinstance(node, dict):
        if {"path", "bytes", "sha256"} <= node.keys() and isinstance(node["path"], str):
            out.append(node)
        else:
            for v in node.values():
                _listed(v, out)
    elif isinstance(node, list):
        for v in node:
            _listed(v, out)
    return out


def plan_files(manifest: dict, splits: list[str]) -> list[FileCopy]:
    """The files to copy for ``splits``: listed ones (checked) + unlisted Zarr metadata."""
    entries = [e for sh in manifest["shards"] if sh["split"] in splits for e in _listed(sh, [])]
    rest = {k: v for k, v in manifest.items() if k not in ("shards", "failures", "splits")}
    others = list(manifest["splits"])
    for e in _listed(rest, []):  # e.g. Zarr metadata, if the manifest lists it
        owner = _split_of(e["path"], others)
        if owner is None or owner in splits:
            entries.append(e)
    plan: dict[str, FileCopy] = {}
    for e in entries:
        path = check_rel(e["path"])
        if path in plan and plan[path].sha256 != e["sha256"]:
            raise StoreCorruptError(f"{path}: listed twice in the manifest with different sha256")
        plan[path] = FileCopy(path, int(e["bytes"]), e["sha256"])
    for path in _zarr_metadata(manifest, splits):
        plan.setdefault(path, FileCopy(path, None, None))
    return sorted(plan.values(), key=lambda f: f.path)


def _zarr_metadata(manifest: dict, splits: list[str]) -> list[str]:
    """zarr.json of the root, each split group and each array a listed chunk belongs to."""
    if "zarr" not in manifest["formats"]:
        return []
    out = {f"{ZARR_DIR}/zarr.json"}
    for sh in manifest["shards"]:
        if sh["split"] not in splits:
            continue
        out.add(f"{ZARR_DIR}/{sh['split']}/zarr.json")
        for e in sh["files"].get("zarr", []):
            parts = e["path"].split("/")
            if len(parts) > 3 and parts[0] == ZARR_DIR:
                out.add("/".join(parts[:3]) + "/zarr.json")
    return sorted(out)


def subset_manifest(manifest: dict, splits: list[str], src_url: str, src_sha: str) -> dict:
    """The manifest of ``splits`` only: counts recomputed (indexed = stored + failed), the
    source recorded in ``copied_from``."""
    out = copy.deepcopy(manifest)
    out["splits"] = {s: manifest["splits"][s] for s in splits}
    out["shards"] = [sh for sh in manifest["shards"] if sh["split"] in splits]
    out["failures"] = [f for f in manifest["failures"] if f.get("split") in splits]
    if "zarr_metadata" in manifest:  # the root's, and the kept splits' group and arrays'
        others = list(manifest["splits"])
        out["zarr_metadata"] = [
            e for e in manifest["zarr_metadata"] if _split_of(e["path"], others) in (None, *splits)
        ]
    totals = dict(manifest["totals"])
    for key in ("indexed", "stored", "failed", "bitstream_bytes"):
        totals[key] = sum(int(out["splits"][s].get(key, 0)) for s in splits)
    sizes: dict[str, int] = {}
    for sh in out["shards"]:
        for fmt, files in sh["files"].items():
            sizes[fmt] = sizes.get(fmt, 0) + sum(f["bytes"] for f in files)
    totals["bytes"] = sizes
    out["totals"] = totals
    out["copied_from"] = {"url": src_url, "manifest_sha256": src_sha, "splits": list(splits)}
    return out


def _claim(dest: StoreLocation, src_url: str, src_sha: str) -> None:
    """Refuse a destination holding something else; mark it as a copy of this source."""
    marker = {"url": src_url, "manifest_sha256": src_sha}
    if dest.size(MANIFEST_NAME) is not None:
        theirs, raw = load_manifest(dest)
        same = hashlib.sha256(raw).hexdigest() == src_sha or (
            theirs.get("copied_from", {}).get("manifest_sha256") == src_sha
        )
        if not same:
            raise StoreExistsError(
                f"{dest.url} holds another store (its manifest is not from {src_url}); pick another destination"
            )
        dest.fs.rm_file(dest.join(MANIFEST_NAME))  # unfinished again until the copy ends
    elif dest.size(MARKER) is not None:
        with dest.open(MARKER) as f:
            theirs = json.loads(f.read(MAX_METADATA_BYTES))
        if theirs.get("manifest_sha256") != src_sha:
            raise StoreExistsError(
                f"{dest.url} holds an unfinished copy of another store ({theirs.get('url')}); pick another destination"
            )
    elif dest.fs.exists(dest.root) and dest.fs.ls(dest.root):
        raise StoreExistsError(f"{dest.url} exists and is not empty; pick another destination")
    _write_bytes(dest, MARKER, (json.dumps(marker, sort_keys=True) + "\n").encode())


def _copy_all(src, dest, plan: list[FileCopy], bar, jobs: int):
    """(item, copied) per file, ``jobs`` at a time; the first failure cancels the rest."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:  # on a failure or Ctrl-C: queued files are dropped, those in flight finish
        futures = {pool.submit(_copy_file, src, dest, item, bar): item for item in plan}
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for f in sorted(done, key=lambda f: futures[f].path):
        f.result()  # raises the first failure (by path: a stable message)
    return [(futures[f], f.result()) for f in futures if f in done]


def _intact(dest: StoreLocation, item: FileCopy) -> bool:
    if item.sha256 is None or dest.size(item.path) != item.bytes:
        return False
    h = hashlib.sha256()
    with dest.open(item.path) as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest() == item.sha256


def _copy_file(src: StoreLocation, dest: StoreLocation, item: FileCopy, bar) -> bool:
    """Copy one file, checked against the manifest; False when it was already intact."""
    if item.sha256 is None:
        return _copy_unlisted(src, dest, item)
    if _intact(dest, item):
        bar.update(item.bytes or 0)
        return False
    limit = item.bytes if item.bytes is not None else MAX_METADATA_BYTES
    final = dest.join(item.path)
    target = _part_name(final) if dest.local else final
    dest.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
    try:
        got, n = _stream(src, dest, item, target, limit, bar)
        if item.bytes is not None and n != item.bytes:
            raise StoreCorruptError(
                f"{item.path}: {n} bytes, manifest says {item.bytes} (truncated)"
            )
        if item.sha256 is not None and got != item.sha256:
            raise StoreCorruptError(f"{item.path}: sha256 differs from the manifest")
    except BaseException:
        if dest.fs.exists(target):
            dest.fs.rm_file(target)
        raise
    if target != final:
        os.replace(target, final)
    return True


def _copy_unlisted(src: StoreLocation, dest: StoreLocation, item: FileCopy) -> bool:
    """A small file the manifest does not list (Zarr metadata): bounded, must be JSON."""
    try:
        with src.open(item.path) as f:
            data = f.read(MAX_METADATA_BYTES + 1)
    except FileNotFoundError:
        raise StoreCorruptError(f"{item.path}: missing from {src.url}") from None
    if len(data) > MAX_METADATA_BYTES:
        raise StoreCorruptError(f"{item.path}: over {MAX_METADATA_BYTES} bytes for Zarr metadata")
    try:
        json.loads(data)
    except ValueError:
        raise StoreCorruptError(f"{item.path}: not valid JSON Zarr metadata") from None
    if dest.size(item.path) == len(data):
        with dest.open(item.path) as f:
            if f.read(MAX_METADATA_BYTES + 1) == data:
                return False
    _write_bytes(dest, item.path, data)
    return True


def _stream(src, dest, item: FileCopy, target: str, limit: int, bar) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    try:
        fin = src.open(item.path)
    except FileNotFoundError:
        raise StoreCorruptError(f"{item.path}: missing from {src.url}") from None
    with fin, dest.fs.open(target, "wb") as fout:
        while block := fin.read(min(CHUNK, limit + 1 - n)):
            n += len(block)
            if n > limit:
                raise StoreCorruptError(
                    f"{item.path}: longer than the {limit} bytes the manifest declares"
                )
            h.update(block)
            fout.write(block)
            bar.update(len(block))
    return h.hexdigest(), n


def _part_name(final: str) -> str:
    head, _, name = final.rpartition("/")
    return f"{head}/.{name}.{os.getpid()}.part"


def _write_bytes(dest: StoreLocation, rel: str, data: bytes) -> None:
    """Write a small file whole (local: temporary name, fsync, rename)."""
    final = dest.join(rel)
    dest.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
    if not dest.local:
        dest.fs.pipe_file(final, data)
        return
    tmp = _part_name(final)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="copy",
        disable=None if enabled else True,  # None: off when not on a terminal
    )

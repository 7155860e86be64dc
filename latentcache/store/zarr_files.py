"""Where a Zarr store's arrays live: the root group, and the files (store-relative paths)
each shard and each split's metadata consist of, by zarr's own chunk-key encoding."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import zarr

from latentcache.errors import StoreCorruptError
from latentcache.store.zarr_ragged import ragged_keys, ragged_metadata_keys

__all__ = [
    "BITSTREAMS",
    "ZARR_DIR",
    "ZARR_LAYOUT",
    "chunk_keys",
    "metadata_keys",
    "open_root",
    "shard_files",
    "shard_keys",
    "store_key",
]

ZARR_DIR = "zarr"
ZARR_LAYOUT = 2  # 1: vlen strings and numcodecs filters (not portable)
BITSTREAMS = "bitstreams"


def open_root(store_path: Path, mode: str = "r") -> zarr.Group:
    return zarr.open_group(store_path / ZARR_DIR, mode=mode, zarr_format=3)


def store_key(arr: zarr.Array, key: str) -> str:
    """A chunk or metadata key of ``arr`` as a path relative to the store (as in the manifest)."""
    return f"{ZARR_DIR}/{arr.path}/{key}"


def chunk_keys(arr: zarr.Array, start: int, stop: int) -> list[str]:
    """Storage keys (shards, or chunks when unsharded) holding rows [start, stop), by zarr's
    own chunk-key encoding."""
    grid = arr.shards or arr.chunks
    ranges = [range(start // grid[0], -(-stop // grid[0]))]
    ranges += [range(-(-n // g)) for n, g in zip(arr.shape[1:], grid[1:], strict=True)]
    return [arr.metadata.encode_chunk_key(c) for c in itertools.product(*ranges)]


def shard_keys(group: zarr.Group, index: int) -> list[str]:
    """Every file (store-relative path) that shard ``index`` of the split ``group`` consists of."""
    size = int(group.attrs["shard_size"])
    out = []
    for _, arr in sorted(group.arrays()):
        start = index * size
        out += [store_key(arr, k) for k in chunk_keys(arr, start, min(start + size, arr.shape[0]))]
    blob = group[BITSTREAMS][f"{index:06d}"]
    out += _array_files(blob)
    return out + ragged_keys(group, index, _array_files)


def _array_files(arr: zarr.Array) -> list[str]:
    """A whole array's metadata and chunk files (a per-shard array)."""
    return [store_key(arr, "zarr.json")] + [
        store_key(arr, k) for k in chunk_keys(arr, 0, arr.shape[0])
    ]


def shard_files(store_path: Path, split: str, shard_index: int) -> list[Path]:
    """The files of shard ``shard_index`` of ``split``, just written; a missing one is an error."""
    group = open_root(store_path)[split]
    files = [store_path / rel for rel in shard_keys(group, shard_index)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise StoreCorruptError(f"{missing[0]}: expected after writing shard {shard_index}")
    return files


def metadata_keys(root: zarr.Group, splits: Sequence[str]) -> list[str]:
    """The group and array ``zarr.json`` files of ``splits`` (not the per-shard bitstream arrays,
    which belong to their shard), as store-relative paths."""
    out = [f"{ZARR_DIR}/zarr.json"]
    for split in splits:
        group = root[split]
        out += [f"{ZARR_DIR}/{split}/zarr.json", f"{ZARR_DIR}/{split}/{BITSTREAMS}/zarr.json"]
        out += [store_key(arr, "zarr.json") for _, arr in sorted(group.arrays())]
        out += ragged_metadata_keys(group, f"{ZARR_DIR}/{split}")
    return out

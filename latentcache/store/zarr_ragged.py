"""Ragged per-sample targets in the Zarr layout (detection's boxes), stored as the bitstreams
are: each encode task writes its shard's rows concatenated, one array per target, and every
row records where its part lies::

    <split>/ragged_offsets                 (R, 2) int64 (start, stop) into its shard's arrays;
                                           (0, 0) in holes
    <split>/ragged/<name>/<shard:06d>      (N, *tail) of the task's dtype, e.g.
                                           boxes (N, 4) float32, box_labels (N,) int32

The group's ``ragged`` attribute names each target's dtype and tail shape (the task's
``ragged_targets``). Zarr v3 core data types and the zstd and crc32c codecs only, so other
Zarr readers read them. Reading checks the offsets against the arrays' lengths and the
arrays' dtype and shape against the attribute before slicing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from latentcache.errors import StoreCorruptError

__all__ = [
    "RAGGED",
    "RAGGED_OFFSETS",
    "create_ragged",
    "ragged_spec",
    "write_ragged",
    "read_ragged",
    "ragged_keys",
    "ragged_metadata_keys",
]

RAGGED = "ragged"
RAGGED_OFFSETS = "ragged_offsets"
_COMPRESSORS = (ZstdCodec(level=5), Crc32cCodec())


def create_ragged(group: zarr.Group, spec: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Record the targets' dtypes and tail shapes and make their groups (metadata only)."""
    group.attrs["ragged"] = {n: [str(d), list(t)] for n, (d, t) in sorted(spec.items())}
    for name in spec:
        group.require_group(f"{RAGGED}/{name}")


def ragged_spec(group: zarr.Group) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    raw = group.attrs.get("ragged") or {}
    return {n: (np.dtype(d), tuple(int(v) for v in t)) for n, (d, t) in raw.items()}


def _pack(samples, n_rows: int, spec: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    offsets = np.zeros((n_rows, 2), dtype=np.int64)
    parts: dict[str, list] = {n: [] for n in spec}
    pos = 0
    for i, s in enumerate(samples):
        lengths = {len(s.targets[n]) for n in spec}
        if len(lengths) != 1:
            raise ValueError(f"{s.key}: ragged targets of different lengths {sorted(lengths)}")
        n = lengths.pop()
        offsets[i] = (pos, pos + n)
        pos += n
        for name, (dtype, tail) in spec.items():
            parts[name].append(np.asarray(s.targets[name], dtype=dtype).reshape(n, *tail))
    flat = {
        name: np.concatenate(parts[name]) if parts[name] else np.zeros((0, *tail), dtype)
        for name, (dtype, tail) in spec.items()
    }
    return offsets, flat


def write_ragged(group: zarr.Group, index: int, samples, n_rows: int) -> np.ndarray | None:
    """Write shard ``index``'s arrays; returns its rows' offsets (None: no ragged targets)."""
    spec = ragged_spec(group)
    if not spec:
        return None
    offsets, flat = _pack(samples, n_rows, spec)
    for name, a in flat.items():
        arr = group[f"{RAGGED}/{name}"].create_array(
            f"{index:06d}",
            shape=a.shape,
            chunks=(max(a.shape[0], 1), *a.shape[1:]),
            dtype=a.dtype,
            fill_value=0,
            compressors=_COMPRESSORS,
            overwrite=True,  # a resumed task rewrites what a killed one left
            config={"write_empty_chunks": True},
        )
        if a.shape[0]:
            arr[...] = a
    return offsets


def _shard_array(group, name: str, shard: int, spec, where: Callable) -> zarr.Array:
    try:
        arr = group[f"{RAGGED}/{name}/{shard:06d}"]
    except KeyError:
        raise StoreCorruptError(f"{where(group, name, shard)}: missing") from None
    dtype, tail = spec[name]
    if arr.dtype != dtype or tuple(arr.shape[1:]) != tail:
        raise StoreCorruptError(
            f"{where(group, name, shard)}: {arr.dtype} {arr.shape}, expected {dtype} (N, {tail})"
        )
    return arr


def read_ragged(
    group: zarr.Group, start: int, stop: int, names: Sequence[str], read: Callable, where: Callable
) -> dict[str, np.ndarray]:
    """Rows [start, stop) of ``names``: object arrays holding one array per row.

    ``read(arr, a, b)`` reads rows of an array (raising StoreCorruptError); ``where(group,
    name, shard)`` names a shard array's file for messages."""
    spec = ragged_spec(group)
    offsets = read(group[RAGGED_OFFSETS], start, stop)
    size = int(group.attrs["shard_size"])
    out = {n: np.empty(stop - start, dtype=object) for n in names}
    for shard in range(start // size, -(-stop // size)):
        rows = range(max(start, shard * size) - start, min(stop, (shard + 1) * size) - start)
        for name in names:
            arr = _shard_array(group, name, shard, spec, where)
            data = read(arr, 0, arr.shape[0])
            for i in rows:
                a, b = (int(v) for v in offsets[i])
                if not 0 <= a <= b <= data.shape[0]:
                    raise StoreCorruptError(
                        f"{where(group, name, shard)}: row {start + i}'s {a}:{b} lies outside "
                        f"its {data.shape[0]} entries"
                    )
                out[name][i] = data[a:b]
    return out


def ragged_keys(group: zarr.Group, index: int, keys_of: Callable) -> list[str]:
    """The files of shard ``index``'s ragged arrays (``keys_of(arr)``: an array's files)."""
    return [
        key
        for name in sorted(ragged_spec(group))
        for key in keys_of(group[f"{RAGGED}/{name}/{index:06d}"])
    ]


def ragged_metadata_keys(group: zarr.Group, prefix: str) -> list[str]:
    """The ``zarr.json`` of the ragged groups (``prefix``: the split's store-relative path)."""
    names = sorted(ragged_spec(group))
    if not names:
        return []
    return [f"{prefix}/{RAGGED}/zarr.json"] + [f"{prefix}/{RAGGED}/{n}/zarr.json" for n in names]

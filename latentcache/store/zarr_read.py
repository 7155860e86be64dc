"""Reading rows of a Zarr split: per-row arrays, latents and the bitstreams, holes dropped;
a missing or damaged file is a StoreCorruptError naming it, never fill values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zarr
from zarr.core.sync import sync

from latentcache.errors import StoreCorruptError
from latentcache.store.zarr_files import BITSTREAMS, ZARR_DIR, chunk_keys, store_key
from latentcache.store.zarr_ragged import ragged_spec, read_ragged

__all__ = ["decode_keys", "read_rows", "valid_rows"]

_DERIVED = ("y_string", "z_string")  # read_rows names built from bitstreams/ + offsets


def valid_rows(key: np.ndarray) -> np.ndarray:
    """Rows that hold a sample (holes have an empty key)."""
    return np.asarray(key != "")


def decode_keys(raw: np.ndarray) -> np.ndarray:
    """(n, K) uint8 zero-padded UTF-8 -> (n,) str."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    fixed = raw.view(f"S{raw.shape[-1]}").reshape(raw.shape[:-1])  # drops the zero padding
    return np.char.decode(fixed, "utf-8").astype(str)


def _reason(exc: Exception) -> str:
    if "checksum" in str(exc):
        return "crc32c checksum mismatch: the file is damaged"
    return f"unreadable ({type(exc).__name__}: {exc})"


def _array(group: zarr.Group, name: str) -> zarr.Array:
    try:
        return group[name]
    except KeyError:
        raise StoreCorruptError(f"{ZARR_DIR}/{group.path}/{name}/zarr.json: missing") from None


def _read(arr: zarr.Array, start: int, stop: int) -> np.ndarray:
    """``arr[start:stop]``, refusing missing or damaged files instead of returning fill values."""
    keys = chunk_keys(arr, start, stop)
    for key in keys:
        if not sync(arr.store_path.store.exists(f"{arr.path}/{key}")):
            raise StoreCorruptError(
                f"{store_key(arr, key)}: missing (rows {start}:{stop} of {arr.path})"
            )
    try:
        return arr[start:stop]
    except Exception as exc:  # the codecs' errors: crc32c, blosc, zstd, a short shard index
        files = ", ".join(store_key(arr, k) for k in keys)
        raise StoreCorruptError(f"{files}: {_reason(exc)}") from exc


def _read_strings(group: zarr.Group, start: int, stop: int) -> dict[str, np.ndarray]:
    """y_string and z_string (object arrays of bytes) of rows [start, stop)."""
    offsets = _read(_array(group, "bitstream_offsets"), start, stop)
    size = int(group.attrs["shard_size"])
    out = {n: np.empty(stop - start, dtype=object) for n in _DERIVED}
    for shard in range(start // size, -(-stop // size)):
        blob = _array(group, f"{BITSTREAMS}/{shard:06d}")
        data = _read(blob, 0, blob.shape[0]).tobytes()
        for i in range(max(start, shard * size) - start, min(stop, (shard + 1) * size) - start):
            a, b, c = (int(v) for v in offsets[i])
            if not 0 <= a <= b <= c <= len(data):
                raise StoreCorruptError(
                    f"{store_key(blob, 'c/0')}: row {start + i}'s bitstream {a}:{c} lies outside its {len(data)} bytes"
                )
            out["y_string"][i], out["z_string"][i] = data[a:b], data[b:c]
    return out


def _ragged_where(group: zarr.Group, name: str, shard: int) -> str:
    return f"{ZARR_DIR}/{group.path}/ragged/{name}/{shard:06d}"


def read_rows(
    group: zarr.Group, start: int, stop: int, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Read ``names`` for rows [start, stop), dropping holes.

    ``key`` comes back as str, ``source_sha256`` as hex str, ``y_string`` / ``z_string`` as
    object arrays of bytes. A missing or damaged file raises StoreCorruptError naming it.
    """
    keys = _array(group, "key")
    stop = min(stop, keys.shape[0])
    key = decode_keys(_read(keys, start, stop))
    keep = valid_rows(key)
    strings = _read_strings(group, start, stop) if set(_DERIVED) & set(names) else {}
    ragged = [n for n in names if n in ragged_spec(group)]
    if ragged:
        strings |= read_ragged(group, start, stop, ragged, _read, _ragged_where)
    out = {}
    for name in names:
        if name == "key":
            out[name] = key[keep]
        elif name in strings:
            out[name] = strings[name][keep]
        elif name == "source_sha256":
            digests = _read(_array(group, name), start, stop)[keep]
            out[name] = np.array([bytes(r).hex() for r in digests], dtype=str)
        else:
            out[name] = _read(_array(group, name), start, stop)[keep]
    return out

"""The Zarr v3 layout: one group per split, one row per indexed sample, one Zarr shard per task.

::

    store/zarr/                        (a Zarr v3 group)
      <split>/                         group; attrs: zarr_layout, scales_repr, latent_shape,
                                       shard_size, key_bytes, inputs
        y_hat         (R, M, h, w)     int16, never clipped: the coded symbols
        scales_hat    (R, M, h, w)     uint8 index | float16 | float32   (or z_hat (R, N, h/4, w/4) int16;
                                       none for the factorized prior)
        means_hat     (R, M, h, w)     float32, codecs with means (mbt2018-mean, mbt2018,
                                       cheng2020-*): the decoder's y_hat = y_hat + means_hat
        label         (R,)             int64, -1 in holes
        bpp           (R,)             float32 true bpp, NaN in holes
        bpp_estimate  (R,)             float32
        key           (R, K)           uint8: the key's UTF-8 bytes, zero-padded to K = key_bytes
        source_sha256 (R, 32)          uint8: the source file's sha256 digest
        image_size    (R, 2)           int32 (H, W) unpadded
        canvas_offset (R, 2)           int32 (pad_top, pad_left): where the image sits on the
                                       codec's padded canvas (latent cell (i, j) covers image
                                       pixels from (16i - pad_top, 16j - pad_left))
        <target>      (R, ...)         the task's per-sample arrays (latentcache.tasks), e.g.
                                       mask (R, H_max, W_max) uint8, fill 255, one chunk per row
        latent_shape  (R, 2)           int32 (h, w) of y_hat; arrays are zero-padded beyond it
        z_shape       (R, 2)           int32, the ``shape`` CompressAI's decompress needs
        bitstream_offsets (R, 3)       int64 (start, mid, stop): y_string = data[start:mid],
                                       z_string = data[mid:stop], data = bitstreams/<shard>
        bitstreams/<shard:06d> (B,)    uint8: the y and z strings of shard ``row // shard_size``,
                                       concatenated in row order; one array per encode task

Portable: only the Zarr v3 core data types (bool, int*, uint*, float*) and the codecs bytes,
transpose, blosc, zstd, crc32c and sharding_indexed, so tensorstore, zarrs or zarr.js read every
array. Strings are fixed-width bytes (keys and digests are known when the index is built);
bitstream lengths are known only once a task has encoded its rows, and tasks write
independently, so each task writes its own 1-D ``bitstreams/<shard>`` array and the per-row
offsets into it. Holes are all zeros (key ``b""``, offsets (0, 0, 0)).

Files: latents are sharded, chunk = one sample, Zarr shard = ``shard_size`` rows = one encode
task; the per-row arrays are chunked at ``shard_size`` rows, so a task's rows are one file there
too. Every file is written whole, once, by one task: writers never share a file, and every chunk
is written even when it equals the fill value, so a shard's file set is fixed (``shard_keys``).
crc32c ends every chunk's codec chain (and the shard indexes'), so a damaged byte in any file
fails the read with :class:`~latentcache.errors.StoreCorruptError` naming the file.

Compression, chosen by measurement (``benchmarks/zarr_codecs.py``, README "Scales
representation") for size and decoding speed: ``y_hat``, ``z_hat``: Blosc-zstd 8 bitshuffle;
the uint8 scale index: Blosc-lz4hc 5 bitshuffle (10 % larger, twice as fast to decode); no
transpose (1.5 % smaller, its undo cost 70-85 % of a decompression). Floats (``means_hat``
too): Blosc-zstd 5 bitshuffle. Per-row arrays: Zstd 5. Bitstreams: as is.

R = indexed samples of the split; a sample that failed leaves a hole at the end of its shard.
Mixed image sizes: arrays are sized to the split's largest latent and each sample's real size
is in ``latent_shape``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.core.array import AsyncArray

from latentcache.store.records import EncodedSample
from latentcache.store.scales import scales_array_name, scales_dtype
from latentcache.store.zarr_files import (
    BITSTREAMS,
    ZARR_DIR,
    ZARR_LAYOUT,
    metadata_keys,
    open_root,
    shard_files,
    shard_keys,
)
from latentcache.store.zarr_ragged import (
    RAGGED_OFFSETS,
    create_ragged,
    write_ragged,
)
from latentcache.store.zarr_read import decode_keys, read_rows, valid_rows

__all__ = [
    "ZARR_DIR",
    "ZARR_LAYOUT",
    "BITSTREAMS",
    "create_split",
    "write_rows",
    "shard_files",
    "shard_keys",
    "metadata_keys",
    "read_rows",
    "valid_rows",
    "decode_keys",
]

_CRC = Crc32cCodec()
_INT = (BloscCodec(cname="zstd", clevel=8, shuffle="bitshuffle"), _CRC)  # y_hat, z_hat
_INDEX = (BloscCodec(cname="lz4hc", clevel=5, shuffle="bitshuffle"), _CRC)  # uint8 scale index
_FLOAT = (BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"), _CRC)
_SMALL = (ZstdCodec(level=5), _CRC)
_PER_SAMPLE = ("y_hat", "scales_hat", "z_hat", "means_hat")  # chunk = one sample, sharded
LEGACY_INPUTS = ("y_hat", "scales_hat")  # stores before ``inputs`` was recorded
_WRITE_ALL = {"write_empty_chunks": True}


def _specs(
    m: int,
    n: int,
    hw: tuple[int, int],
    repr_: str,
    key_bytes: int,
    targets: dict,
    inputs=LEGACY_INPUTS,
) -> dict[str, tuple]:
    """name -> (row shape, dtype, fill_value, compressors); ``targets``: the task's arrays;
    ``inputs``: the latents the codec's decoder uses (which latent arrays there are)."""
    h, w = hw
    scales_shape = (n, h // 4, w // 4) if repr_ == "z_hat" else (m, h, w)
    scales = scales_dtype(repr_)
    latents: dict[str, tuple] = {"y_hat": ((m, h, w), "int16", 0, _INT)}
    if "scales_hat" in inputs:
        comp = {"f": _FLOAT, "u": _INDEX}.get(scales.kind, _INT)
        latents[scales_array_name(repr_)] = (scales_shape, scales.name, 0, comp)
    if "means_hat" in inputs:
        latents["means_hat"] = ((m, h, w), "float32", 0, _FLOAT)
    return {
        **latents,
        "label": ((), "int64", -1, _SMALL),
        "bpp": ((), "float32", np.nan, _SMALL),
        "bpp_estimate": ((), "float32", np.nan, _SMALL),
        "key": ((key_bytes,), "uint8", 0, _SMALL),
        "source_sha256": ((32,), "uint8", 0, _SMALL),
        "image_size": ((2,), "int32", 0, _SMALL),
        "canvas_offset": ((2,), "int32", 0, _SMALL),
        "latent_shape": ((2,), "int32", 0, _SMALL),
        "z_shape": ((2,), "int32", 0, _SMALL),
        "bitstream_offsets": ((3,), "int64", 0, _SMALL),
        **targets,
    }


def _key_bytes(keys: Sequence[str]) -> int:
    for k in keys:
        if "\0" in k:
            raise ValueError(f"key {k!r} contains a NUL character: keys are stored zero-padded")
    return max((len(k.encode()) for k in keys), default=1) or 1


def create_split(
    store_path: Path,
    split: str,
    rows: int,
    shard_size: int,
    m: int,
    n: int,
    latent_hw: tuple[int, int],
    repr_: str,
    keys: Sequence[str],
    targets: dict | None = None,
    ragged: dict | None = None,
    inputs: Sequence[str] = LEGACY_INPUTS,
) -> None:
    """Create (or re-open identically) the split's arrays; only metadata is written here.

    ``keys``: the split's sample keys (their longest UTF-8 encoding sizes the ``key`` array).
    ``targets``: the task's per-sample arrays, name -> (row shape, dtype, fill, compressors)
    (``Task.zarr_arrays``), chunked one row each and sharded like the latents.
    ``ragged``: the task's ragged targets, name -> (dtype, tail shape) (``zarr_ragged``).
    ``inputs``: the latents the codec's decoder uses (which latent arrays there are).
    """
    targets = dict(targets or {})
    group = open_root(store_path, "a").require_group(split)
    key_bytes = _key_bytes(keys)
    group.attrs.update(
        {
            "zarr_layout": ZARR_LAYOUT,
            "scales_repr": repr_,
            "latent_shape": list(latent_hw),
            "shard_size": shard_size,
            "key_bytes": key_bytes,
            "targets": sorted(targets),
            "inputs": list(inputs),
        }
    )
    group.require_group(BITSTREAMS)
    specs = _specs(m, n, latent_hw, repr_, key_bytes, targets, tuple(inputs))
    if ragged:
        create_ragged(group, ragged)
        specs[RAGGED_OFFSETS] = ((2,), "int64", 0, _SMALL)
    for name, (shape, dtype, fill, comp) in specs.items():
        if name in group:
            continue
        per_sample = name in _PER_SAMPLE or name in targets
        group.create_array(
            name,
            shape=(rows, *shape),
            chunks=(1 if per_sample else shard_size, *shape),
            shards=(shard_size, *shape) if per_sample else None,
            dtype=dtype,
            fill_value=fill,
            compressors=comp,
        )


def _writable(arr: zarr.Array) -> zarr.Array:
    """``arr`` writing every chunk, fill-valued ones too (a shard's file set never varies)."""
    a = arr._async_array
    return zarr.Array(AsyncArray(metadata=a.metadata, store_path=a.store_path, config=_WRITE_ALL))


def _pad_to(a: np.ndarray, shape: Sequence[int], fill=0) -> np.ndarray:
    if tuple(a.shape) == tuple(shape):
        return a
    out = np.full(shape, fill, dtype=a.dtype)
    out[tuple(slice(0, s) for s in a.shape)] = a
    return out


def _encode_key(key: str, width: int) -> np.ndarray:
    raw = key.encode()
    if len(raw) > width:
        raise ValueError(f"key {key!r} is {len(raw)} bytes; this split stores up to {width}")
    return np.frombuffer(raw.ljust(width, b"\0"), dtype=np.uint8)


def _value(s: EncodedSample, name: str, scales_name: str, row_shape, fill=0):
    if name in s.targets:
        return _pad_to(s.targets[name], row_shape, fill)
    arrays = s.arrays(scales_name)
    if name in arrays:
        return _pad_to(arrays[name], row_shape)
    if name == "key":
        return _encode_key(s.key, row_shape[0])
    if name == "source_sha256":
        return np.frombuffer(bytes.fromhex(s.source_sha256), dtype=np.uint8)
    plain = {
        "label": s.label,
        "bpp": s.bpp,
        "bpp_estimate": s.bpp_estimate,
        "image_size": s.image_size,
        "canvas_offset": s.canvas_offset,
        "latent_shape": s.latent_shape,
        "z_shape": s.z_shape,
    }
    return plain[name]


def _bitstreams(samples: list[EncodedSample], n_rows: int) -> tuple[bytes, np.ndarray]:
    """The shard's concatenated y and z strings, and each row's (start, mid, stop) in them."""
    offsets = np.zeros((n_rows, 3), dtype=np.int64)
    pos = 0
    for i, s in enumerate(samples):
        offsets[i] = (pos, pos + len(s.y_string), pos + len(s.y_string) + len(s.z_string))
        pos = int(offsets[i, 2])
    return b"".join(s.y_string + s.z_string for s in samples), offsets


def _columns(samples: list[EncodedSample], n_rows: int, group: zarr.Group) -> dict:
    """Full-shard column arrays: the samples first, fill values in the holes after them."""
    scales_name = scales_array_name(group.attrs["scales_repr"])
    cols: dict[str, np.ndarray] = {}
    for name, arr in group.arrays():
        if name in ("bitstream_offsets", RAGGED_OFFSETS):
            continue
        col = np.full((n_rows, *arr.shape[1:]), arr.fill_value, dtype=arr.dtype)
        for i, s in enumerate(samples):
            col[i] = _value(s, name, scales_name, arr.shape[1:], arr.fill_value)
        cols[name] = col
    return cols


def _check_fits(group: zarr.Group, samples: list[EncodedSample]) -> None:
    limit = group.attrs["latent_shape"]
    for s in samples:
        if any(a > b for a, b in zip(s.latent_shape, limit, strict=True)):
            raise ValueError(f"{s.key}: latent {s.latent_shape} exceeds the split's {limit}")


def write_rows(
    store_path: Path, split: str, start: int, stop: int, samples: list[EncodedSample]
) -> None:
    """Write rows [start, stop) — exactly one Zarr shard of every array — and the shard's bitstreams."""
    group = open_root(store_path, "r+")[split]
    _check_fits(group, samples)
    index = start // int(group.attrs["shard_size"])
    data, offsets = _bitstreams(samples, stop - start)
    blob = group[BITSTREAMS].create_array(
        f"{index:06d}",
        shape=(len(data),),
        chunks=(max(len(data), 1),),
        dtype="uint8",
        fill_value=0,
        compressors=(_CRC,),
        overwrite=True,  # a resumed task rewrites what a killed one left
        config=_WRITE_ALL,
    )
    if data:
        blob[:] = np.frombuffer(data, dtype=np.uint8)
    _writable(group["bitstream_offsets"])[start:stop] = offsets
    ragged_offsets = write_ragged(group, index, samples, stop - start)
    if ragged_offsets is not None:
        _writable(group[RAGGED_OFFSETS])[start:stop] = ragged_offsets
    for name, col in _columns(samples, stop - start, group).items():
        _writable(group[name])[start:stop] = col

"""The Zarr v3 layout: one group per split, one row per indexed sample, one Zarr shard per task.

::

    store/zarr/                      (a Zarr v3 group)
      <split>/                       group; attrs: scales_repr, latent_shape, shard_size
        y_hat        (R, M, h, w)    int16, Blosc-zstd bitshuffle, never clipped
        scales_hat   (R, M, h, w)    uint8 index | float16 | float32   (or z_hat (R, N, h/4, w/4) int16)
        label        (R,)            int64, -1 in holes
        bpp          (R,)            float32 true bpp, NaN in holes
        bpp_estimate (R,)            float32
        key          (R,)            str, "" in holes
        source_sha256 (R,)           str
        image_size   (R, 2)          int32 (H, W) unpadded
        latent_shape (R, 2)          int32 (h, w) of y_hat; arrays are zero-padded beyond it
        z_shape      (R, 2)          int32, the ``shape`` CompressAI's decompress needs
        y_string, z_string (R,)      variable-length bytes: the bitstream

Latents and bitstreams: chunk = one sample, Zarr shard = ``shard_size`` rows = one encode task.
The small per-row arrays (label, bpp, key, shapes) are chunked at ``shard_size`` rows, so a
task's rows are one chunk there too. Every file is written whole in one call (zarr's
LocalStore writes atomically) by one task: writers never share a file.

Compression, chosen by measurement (README, "Scales representation"; the first demo codec at
0.51 bpp, 256² crops, per sample): ``y_hat`` Blosc-zstd 5 with bitshuffle, 1.17x the bitstream in 0.9 ms (clevel 9
gains 5% for 45x the time); the uint8 scale index a byte delta + Zstd 15, 4.27x in 12 ms
(Blosc bitshuffle 5.0x; Zstd 19 4.23x in 30 ms): σ̂ is smooth along rows. Floats: Blosc
bitshuffle.
R = indexed samples of the split; a sample that failed leaves a hole at the end of its shard
(key "", label -1). Mixed image sizes: arrays are sized to the split's largest latent and each
sample's real size is in ``latent_shape``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.codecs.numcodecs import Delta

from latentcache.store.records import EncodedSample
from latentcache.store.scales import scales_array_name, scales_dtype

__all__ = ["ZARR_DIR", "create_split", "write_rows", "shard_files", "read_rows", "valid_rows"]

ZARR_DIR = "zarr"
_INT = BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")
_SMALL = ZstdCodec(level=5)
_INDEX = ZstdCodec(level=15)
_PER_SAMPLE = ("y_hat", "scales_hat", "z_hat", "y_string", "z_string")  # chunk = one sample


def _open_root(store_path: Path, mode: str = "r") -> zarr.Group:
    return zarr.open_group(store_path / ZARR_DIR, mode=mode, zarr_format=3)


def _specs(m: int, n: int, hw: tuple[int, int], repr_: str) -> dict[str, tuple]:
    """name -> (row shape, dtype, fill_value, compressor)."""
    h, w = hw
    scales_shape = (n, h // 4, w // 4) if repr_ == "z_hat" else (m, h, w)
    return {
        "y_hat": ((m, h, w), "int16", 0, _INT),
        scales_array_name(repr_): (
            scales_shape,
            scales_dtype(repr_).name,
            0,
            _INDEX if repr_ == "index" else _INT,
        ),
        "label": ((), "int64", -1, _SMALL),
        "bpp": ((), "float32", np.nan, _SMALL),
        "bpp_estimate": ((), "float32", np.nan, _SMALL),
        "key": ((), str, "", _SMALL),
        "source_sha256": ((), str, "", _SMALL),
        "image_size": ((2,), "int32", 0, _SMALL),
        "latent_shape": ((2,), "int32", 0, _SMALL),
        "z_shape": ((2,), "int32", 0, _SMALL),
        "y_string": ((), "variable_length_bytes", b"", _SMALL),
        "z_string": ((), "variable_length_bytes", b"", _SMALL),
    }


def create_split(
    store_path: Path,
    split: str,
    rows: int,
    shard_size: int,
    m: int,
    n: int,
    latent_hw: tuple[int, int],
    repr_: str,
) -> None:
    """Create (or re-open identically) the split's arrays; only metadata is written here."""
    group = zarr.open_group(store_path / ZARR_DIR, mode="a", zarr_format=3).require_group(split)
    group.attrs.update(
        {"scales_repr": repr_, "latent_shape": list(latent_hw), "shard_size": shard_size}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # VariableLengthBytes has no finished v3 spec yet
        for name, (shape, dtype, fill, comp) in _specs(m, n, latent_hw, repr_).items():
            if name in group:
                continue
            per_sample = name in _PER_SAMPLE
            group.create_array(
                name,
                shape=(rows, *shape),
                chunks=(1 if per_sample else shard_size, *shape),
                shards=(shard_size, *shape) if per_sample else None,
                dtype=dtype,
                fill_value=fill,
                filters=[Delta(dtype="u1")] if comp is _INDEX else None,
                compressors=comp,
            )


def _pad_to(a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    if tuple(a.shape) == tuple(shape):
        return a
    out = np.zeros(shape, dtype=a.dtype)
    out[tuple(slice(0, s) for s in a.shape)] = a
    return out


def _columns(
    samples: list[EncodedSample], n_rows: int, group: zarr.Group, scales_name: str
) -> dict:
    """Full-shard column arrays: the samples first, fill values in the holes after them."""
    cols: dict[str, np.ndarray] = {}
    for name in group.array_keys():
        arr = group[name]
        col = np.full(
            (n_rows, *arr.shape[1:]),
            arr.fill_value,
            dtype=arr.dtype if arr.dtype != object else object,
        )
        for i, s in enumerate(samples):
            col[i] = _value(s, name, scales_name, arr.shape[1:])
        cols[name] = col
    return cols


def _value(s: EncodedSample, name: str, scales_name: str, row_shape):
    if name == "y_hat":
        return _pad_to(s.y_hat, row_shape)
    if name == scales_name:
        return _pad_to(s.scales, row_shape)
    plain = {
        "label": s.label,
        "bpp": s.bpp,
        "bpp_estimate": s.bpp_estimate,
        "key": s.key,
        "source_sha256": s.source_sha256,
        "image_size": s.image_size,
        "latent_shape": s.latent_shape,
        "z_shape": s.z_shape,
        "y_string": s.y_string,
        "z_string": s.z_string,
    }
    return plain[name]


def write_rows(
    store_path: Path, split: str, start: int, stop: int, samples: list[EncodedSample]
) -> None:
    """Write rows [start, stop) — exactly one Zarr shard of every array — in one call each."""
    group = _open_root(store_path, "r+")[split]
    scales_name = scales_array_name(group.attrs["scales_repr"])
    for s in samples:
        if any(a > b for a, b in zip(s.latent_shape, group.attrs["latent_shape"], strict=True)):
            raise ValueError(
                f"{s.key}: latent {s.latent_shape} exceeds the split's {group.attrs['latent_shape']}"
            )
    for name, col in _columns(samples, stop - start, group, scales_name).items():
        group[name][start:stop] = col


def shard_files(store_path: Path, split: str, shard_index: int) -> list[Path]:
    """The files that hold shard ``shard_index`` of every array of ``split`` (those that exist)."""
    group = _open_root(store_path)[split]
    files = []
    for name, arr in sorted(group.arrays()):
        f = (
            store_path
            / ZARR_DIR
            / split
            / name
            / "c"
            / str(shard_index)
            / Path(*(["0"] * (arr.ndim - 1)))
        )
        if f.is_file():
            files.append(f)
    return files


def valid_rows(key: np.ndarray) -> np.ndarray:
    """Rows that hold a sample (holes have an empty key)."""
    return np.asarray(key != "")


def read_rows(
    group: zarr.Group, start: int, stop: int, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Read ``names`` for rows [start, stop), dropping holes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Numcodecs codecs are not in the Zarr version 3")
        key = group["key"][start:stop]
        keep = valid_rows(key)
        return {
            name: key[keep] if name == "key" else group[name][start:stop][keep] for name in names
        }

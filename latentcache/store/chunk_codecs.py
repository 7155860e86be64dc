"""Decoding one stored Zarr v3 chunk with numcodecs: the codecs' inverse, bounded and checked.

::

    stored bytes ─► crc32c (checked) ─► blosc | zstd | gzip (output bounded by the chunk size)
                 ─► bytes (endian) ─► transpose | numcodecs.delta ─► the chunk's array

Used by :mod:`latentcache.store.shard_reader` (sharded and row-chunked arrays alike).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import google_crc32c
import numpy as np

from latentcache.errors import StoreCorruptError

__all__ = ["COMPRESSORS", "array_decoder", "check_crc", "decompress_into", "zstd_content_size"]

COMPRESSORS = ("blosc", "zstd", "gzip")
_TORCH_CUMSUM = ("u1", "i1", "i2", "i4", "i8")  # integer types torch.cumsum takes


def check_crc(buf: memoryview, what: str) -> memoryview:
    if len(buf) < 4:
        raise StoreCorruptError(f"{what}: {len(buf)} bytes, too short for its crc32c")
    body, stored = buf[:-4], int.from_bytes(buf[-4:], "little")
    if google_crc32c.value(bytes(body)) != stored:
        raise StoreCorruptError(f"{what}: crc32c checksum mismatch: the file is damaged")
    return body


def decompress_into(name: str, buf: memoryview, out: np.ndarray, what: str) -> None:
    """Decompress ``buf`` into ``out`` (a flat uint8 view); the output must fill it exactly."""
    try:
        if name == "blosc":
            from numcodecs import blosc

            nbytes = blosc._cbuffer_sizes(buf)[0]
            if nbytes != out.nbytes:
                raise ValueError(f"holds {nbytes} bytes, expected {out.nbytes}")
            blosc.decompress(buf, out)
        elif name == "zstd":
            from numcodecs import zstd

            size = zstd_content_size(buf)
            if size is not None and size != out.nbytes:
                raise ValueError(f"holds {size} bytes, expected {out.nbytes}")
            zstd.decompress(buf, out)
        else:  # gzip (RFC 1952), bounded
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = d.decompress(buf, out.nbytes + 1)
            if len(data) != out.nbytes or not d.eof:
                raise ValueError(f"decoded to {len(data)}+ bytes, expected {out.nbytes}")
            out[:] = np.frombuffer(data, np.uint8)
    except (RuntimeError, ValueError) as e:
        raise StoreCorruptError(f"{what}: {name} chunk: {e}") from None


def zstd_content_size(buf) -> int | None:
    """The decompressed size a Zstandard frame declares (RFC 8878 3.1.1.1), None if absent."""
    b = memoryview(buf).cast("B")
    if len(b) < 6 or bytes(b[:4]) != b"\x28\xb5\x2f\xfd":
        raise ValueError("not a Zstandard frame")
    fhd = b[4]
    fcs_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    pos = 5 + (not single) + (0, 1, 2, 4)[dict_flag]
    n = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if n == 0:
        return None
    if len(b) < pos + n:
        raise ValueError("truncated Zstandard frame header")
    size = int.from_bytes(bytes(b[pos : pos + n]), "little")
    return size + 256 if n == 2 else size


def array_decoder(codec: dict) -> Callable[[np.ndarray], np.ndarray]:
    conf = codec.get("configuration") or {}
    if codec["name"] == "transpose":
        order = tuple(conf["order"])
        return lambda a: a.reshape([a.shape[i] for i in order]).transpose(np.argsort(order))
    dtype = np.dtype(conf["dtype"])
    if np.dtype(conf.get("astype", dtype)) == dtype and dtype.str[1:] in _TORCH_CUMSUM:
        return lambda a: _cumsum(a, dtype)
    from numcodecs import Delta

    delta = Delta(**conf)
    return lambda a: delta.decode(a).reshape(a.shape).astype(a.dtype, copy=False)


def _cumsum(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """numcodecs.Delta's decode (a wrapping running sum over the flat chunk): torch's
    cumsum, ~25x faster than numpy's on uint8."""
    import torch

    flat = torch.from_numpy(np.ascontiguousarray(a).view(dtype).reshape(-1))
    return flat.cumsum(0, dtype=flat.dtype).numpy().reshape(a.shape).view(a.dtype)

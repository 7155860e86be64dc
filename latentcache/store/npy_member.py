"""Array members of a WebDataset sample: ``.npy`` bytes, Zstandard- or gzip-compressed or
plain, written with :func:`npy_bytes` and read back with every check before allocation.

::

    member bytes ─► decode_array(encoding): zstd frame size bounded by the ArraySpec first
      │ (gzip: only the header, then exactly the bytes it declares, are decompressed)
      └► read_npy_checked: .npy magic, numpy's own header parser (never object: nothing is
         unpickled), dtype, channels and h, w checked against the ArraySpec, data length exact

Every refusal is a ``ValueError`` with one short reason; wds_store adds the shard and member.
"""

from __future__ import annotations

import functools
import gzip
import io
import math
import zlib
from dataclasses import dataclass

import numpy as np

from latentcache.store.chunk_codecs import zstd_content_size

__all__ = [
    "ARRAY_EXT",
    "ARRAY_SUFFIXES",
    "MAX_MEMBER_BYTES",
    "MAX_NPY_HEADER",
    "ArraySpec",
    "decode_array",
    "load_npy",
    "npy_bytes",
    "read_npy_checked",
]

ARRAY_EXT = "npy.zst"  # what writers use; readers take any of ARRAY_SUFFIXES
ARRAY_SUFFIXES = (".npy.zst", ".npy.gz", ".npy")  # all decoded with the same checks
ZSTD_LEVEL = 9
MAX_MEMBER_BYTES = 256 * 2**20
MAX_NPY_HEADER = 4096


@dataclass(frozen=True)
class ArraySpec:
    """What one array member must be: dtype, channel count, at most ``max_hw`` spatially.
    ``channels`` None: a plane, (h, w) (a mask); ``dtype`` "": unchecked."""

    dtype: str
    channels: int | None
    max_hw: tuple[int, int]

    @classmethod
    def unchecked(cls) -> ArraySpec:  # writers' own round trips; never used on store input
        return cls("", None, (1 << 16, 1 << 16))

    def max_npy_bytes(self) -> int:
        """The most bytes a ``.npy`` of this spec can hold (header included)."""
        if not self.dtype:
            return MAX_MEMBER_BYTES
        n = (self.channels or 1) * self.max_hw[0] * self.max_hw[1] * np.dtype(self.dtype).itemsize
        return min(n + MAX_NPY_HEADER + 16, MAX_MEMBER_BYTES)


def npy_bytes(a: np.ndarray, ext: str = ARRAY_EXT) -> bytes:
    """An array member's bytes: ``.npy``, compressed as ``ext`` says (equal arrays, equal bytes:
    gzip with a fixed mtime)."""
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    raw = buf.getvalue()
    if ext == "npy.zst":
        import numcodecs

        return bytes(numcodecs.Zstd(level=ZSTD_LEVEL).encode(raw))
    if ext == "npy.gz":
        return gzip.compress(raw, compresslevel=6, mtime=0)
    if ext == "npy":
        return raw
    raise ValueError(f"array member encoding {ext!r}: expected one of {list(ARRAY_SUFFIXES)}")


def load_npy(b: bytes, spec: ArraySpec | None = None, encoding: str = "npy.gz") -> np.ndarray:
    """A member's array (a copy). See :func:`decode_array` for the checks."""
    return np.array(decode_array(encoding, b, spec or ArraySpec.unchecked()))


def decode_array(encoding: str, b, spec: ArraySpec) -> np.ndarray:
    """A member's array, possibly a read-only view of a fresh buffer (never of ``b``'s owner
    beyond this call: callers copy it into their batch). The .npy header is read and checked
    against ``spec`` before the data; at most the bytes it declares are decompressed."""
    if encoding == "npy":
        return read_npy_checked(b, spec, copy=False)
    if encoding == "npy.zst":
        return _zstd_npy(b, spec)
    if encoding == "npy.gz":
        return _gzip_npy(b, spec)
    raise ValueError(f"array member encoding {encoding!r}: expected one of {list(ARRAY_SUFFIXES)}")


def _zstd_npy(b, spec: ArraySpec) -> np.ndarray:
    from numcodecs import zstd

    size = zstd_content_size(b)
    bound = spec.max_npy_bytes()
    if size is None or size > bound:
        raise ValueError(
            f"its zstd frame declares {size} bytes, over the {bound} its array may take (zstd bomb or oversized array)"
        )
    out = np.empty(size, np.uint8)
    try:
        zstd.decompress(b, out)
    except RuntimeError as exc:
        raise ValueError(f"not valid zstd ({str(exc)[:120]})") from None
    return read_npy_checked(out, spec, copy=False)


def _gzip_npy(b, spec: ArraySpec) -> np.ndarray:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = d.decompress(b, MAX_NPY_HEADER + 16)
        shape, fortran, dtype, offset = _npy_header(head, spec)
        total = offset + _nbytes(shape, dtype)
        raw = head + d.decompress(d.unconsumed_tail, max(total - len(head), 0) + 1)
    except zlib.error as exc:
        raise ValueError(f"not valid gzip ({exc})") from None
    if len(raw) > total:
        raise ValueError(
            f"gunzips to more than the {total} bytes its .npy header declares (gzip bomb)"
        )
    if not d.eof or d.unused_data:
        raise ValueError("truncated gzip, or bytes after its end")
    return _array(raw, shape, fortran, dtype, offset, copy=False)


def read_npy_checked(raw, spec: ArraySpec, copy: bool = True) -> np.ndarray:
    """An array from ``.npy`` bytes; dtype and shape checked before the data is touched
    (``copy=False``: a read-only view of ``raw``)."""
    shape, fortran, dtype, offset = _npy_header(raw, spec)
    return _array(raw, shape, fortran, dtype, offset, copy=copy)


def _npy_header(raw, spec: ArraySpec) -> tuple[tuple, bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of .npy bytes, checked against ``spec``."""
    view = memoryview(raw).cast("B")
    if len(view) < 10 or bytes(view[:6]) != b"\x93NUMPY":
        raise ValueError("not a valid .npy (no .npy magic)")
    wide = view[6] >= 2
    size = int.from_bytes(view[8:12] if wide else view[8:10], "little")
    offset = size + (12 if wide else 10)
    if offset > min(len(view), MAX_NPY_HEADER + 12):
        raise ValueError(f"not a valid .npy (a header of {offset} bytes)")
    shape, fortran, dtype = _parse_npy_header(bytes(view[:offset]))
    _check_header(shape, dtype, spec)
    return shape, fortran, dtype, offset


@functools.lru_cache(maxsize=512)
def _parse_npy_header(head: bytes) -> tuple[tuple, bool, np.dtype]:
    """numpy's own header parser (no pickle, literal values only); equal headers parse once."""
    fp = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(fp)
        reader = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }
        if version not in reader:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = reader[version](fp, max_header_size=MAX_NPY_HEADER)
    except ValueError as exc:
        raise ValueError(f"not a valid .npy ({str(exc)[:120]})") from None
    if fp.tell() != len(head):
        raise ValueError("not a valid .npy (header length)")
    return shape, fortran, dtype


def _nbytes(shape: tuple, dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def _array(
    raw, shape: tuple, fortran: bool, dtype: np.dtype, offset: int, copy: bool = True
) -> np.ndarray:
    n = _nbytes(shape, dtype)
    have = memoryview(raw).nbytes - offset
    if have != n:
        raise ValueError(f"holds {have} data bytes, its .npy header declares {n}")
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset)
    data = data.reshape(shape, order="F" if fortran else "C")
    return data.copy() if copy else data


def _check_header(shape: tuple, dtype: np.dtype, spec: ArraySpec) -> None:
    if dtype.hasobject:
        raise ValueError("object dtype: a pickled .npy, refused (nothing is unpickled)")
    if not spec.dtype:
        return
    if dtype != np.dtype(spec.dtype):
        raise ValueError(f"dtype {dtype}, manifest says {spec.dtype}")
    if spec.channels is None:
        if len(shape) != 2:
            raise ValueError(f"shape {shape}, expected (h, w)")
    elif len(shape) != 3 or shape[0] != spec.channels:
        raise ValueError(f"shape {shape}, manifest says ({spec.channels}, h, w)")
    if shape[-2] > spec.max_hw[0] or shape[-1] > spec.max_hw[1]:
        raise ValueError(
            f"shape {shape} is larger than the {tuple(spec.max_hw)} its split allows (oversized array)"
        )

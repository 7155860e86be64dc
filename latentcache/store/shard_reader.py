"""A fast reader for sharded Zarr v3 arrays: whole row ranges of a shard file, decoded with
numcodecs, as zarr-python would read them, without its per-chunk async overhead.

::

    <array>/zarr.json ─► ShardLayout (shapes, dtype, fill, codecs; None if not supported)
    <array>/c/<s>/0/0/0 (one shard file, opened through LatentStore.open_file)
      └► index (end or start): n x (offset, nbytes) uint64 + crc32c, checked
      └► rows [lo, hi): one read of the contiguous byte range of their inner chunks
           └► per inner chunk, codecs decoded in reverse order:
                crc32c (checked) ─► blosc | zstd | gzip (output bounded by the chunk size)
                ─► bytes (endian) ─► transpose | numcodecs.delta ─► rows of the output

Only what the Zarr v3 spec's sharding_indexed codec defines is read (plus zarr-python's
``numcodecs.delta``); any other layout (partial inner chunks, unknown codecs, stacked
compressors) makes :func:`shard_layout` return None and callers read with zarr-python.
Empty inner chunks (offset = nbytes = 2^64 - 1) and missing shard files read as the fill value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from latentcache.errors import StoreCorruptError
from latentcache.store.chunk_codecs import (
    COMPRESSORS,
    array_decoder,
    check_crc,
    decompress_into,
    zstd_content_size,
)

__all__ = [
    "zstd_content_size",
    "ShardLayout",
    "ShardFile",
    "shard_layout",
    "chunk_layout",
    "read_layout",
    "open_shard",
    "read_shard_rows",
]

_EMPTY = 2**64 - 1


@dataclass(frozen=True)
class ShardLayout:
    """One sharded array's geometry and inner codecs, from its zarr.json."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fill_value: object
    shard_rows: int  # rows per shard file (outer chunk)
    chunk_rows: int  # rows per inner chunk
    array_codecs: tuple[dict, ...]  # array -> array (transpose, numcodecs.delta), in order
    byte_codecs: tuple[dict, ...]  # bytes -> bytes, in order
    index_at_end: bool
    index_crc: bool
    key_prefix: str  # "c/" (default encoding) or "" (v2)
    key_sep: str
    indexed: bool = True  # False: an unsharded array, one chunk per file (chunk_layout)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def chunks_per_shard(self) -> int:
        return self.shard_rows // self.chunk_rows

    @property
    def chunk_nbytes(self) -> int:
        return self.chunk_rows * math.prod(self.row_shape) * self.dtype.itemsize

    @property
    def num_shards(self) -> int:
        return math.ceil(self.shape[0] / self.shard_rows) if self.shape[0] else 0

    def shard_key(self, shard: int) -> str:
        """The shard file's key relative to the array's folder."""
        return self.key_prefix + self.key_sep.join(
            str(i) for i in (shard, *[0] * len(self.row_shape))
        )

    def index_nbytes(self) -> int:
        return 16 * self.chunks_per_shard + 4 * self.index_crc


def _fill(meta: dict, dtype: np.dtype):
    value = meta.get("fill_value", 0)
    if isinstance(value, str):  # "NaN", "Infinity", hex floats
        return np.array(float(value) if value[:2] != "0x" else float.fromhex(value), dtype)[()]
    return np.array(value, dtype=dtype)[()]


def _split_codecs(codecs: list[dict]) -> tuple[tuple, dict, tuple] | None:
    names = [c["name"] for c in codecs]
    if "bytes" not in names:
        return None
    i = names.index("bytes")
    arrays, byte_codecs = tuple(codecs[:i]), tuple(codecs[i + 1 :])
    if any(c["name"] not in ("transpose", "numcodecs.delta") for c in arrays):
        return None
    kinds = [c["name"] for c in byte_codecs]
    if any(k not in (*COMPRESSORS, "crc32c") for k in kinds):
        return None
    if sum(k in COMPRESSORS for k in kinds) > 1:
        return None
    if any(k in COMPRESSORS for k in kinds[1:]):  # a compressor must be innermost
        return None
    return arrays, codecs[i], byte_codecs


def shard_layout(meta: dict) -> ShardLayout | None:
    """The layout of a row-sharded array from its zarr.json dict, or None if not supported."""
    try:
        return _layout(meta)
    except (KeyError, TypeError, ValueError):
        return None


def _layout(meta: dict) -> ShardLayout | None:
    codecs = meta.get("codecs", [])
    if meta.get("zarr_format") != 3 or len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed":
        return None
    conf = codecs[0]["configuration"]
    index_codecs = [c["name"] for c in conf.get("index_codecs", [])]
    if index_codecs not in (["bytes"], ["bytes", "crc32c"]):
        return None
    inner = tuple(int(s) for s in conf["chunk_shape"])
    return _rows_layout(
        meta,
        conf["codecs"],
        inner,
        index_at_end=conf.get("index_location", "end") == "end",
        index_crc=index_codecs[-1] == "crc32c",
    )


def chunk_layout(meta: dict) -> ShardLayout | None:
    """An unsharded array chunked along rows only (latentcache's per-row arrays), as a layout
    whose "shard" files hold one chunk and no index; None if not supported."""
    try:
        if meta.get("zarr_format") != 3 or any(
            c["name"] == "sharding_indexed" for c in meta["codecs"]
        ):
            return None
        return _rows_layout(meta, meta["codecs"], None, index_at_end=True, index_crc=False)
    except (KeyError, TypeError, ValueError):
        return None


def _rows_layout(
    meta: dict, codecs: list, inner: tuple | None, index_at_end: bool, index_crc: bool
) -> ShardLayout | None:
    """The geometry and codecs common to both: chunks of whole rows, ``inner`` ones inside
    each shard, or (``inner`` None) one chunk per file."""
    if meta.get("storage_transformers") or meta["chunk_grid"]["name"] != "regular":
        return None
    shape = tuple(int(s) for s in meta["shape"])
    outer = tuple(int(s) for s in meta["chunk_grid"]["configuration"]["chunk_shape"])
    rows = outer if inner is None else inner
    if len(shape) < 1 or outer[1:] != shape[1:] or rows[1:] != shape[1:] or outer[0] % rows[0]:
        return None
    dtype_name = meta["data_type"]
    if not isinstance(dtype_name, str) or dtype_name not in _DTYPES:
        return None
    split = _split_codecs(codecs)
    if split is None:
        return None
    arrays, bytes_codec, byte_codecs = split
    endian = (bytes_codec.get("configuration") or {}).get("endian", "little")
    dtype = np.dtype(_DTYPES[dtype_name]).newbyteorder("<" if endian == "little" else ">")
    key = meta.get("chunk_key_encoding", {"name": "default"})
    sep = (key.get("configuration") or {}).get(
        "separator", "/" if key["name"] == "default" else "."
    )
    if key["name"] not in ("default", "v2"):
        return None
    return ShardLayout(
        shape=shape,
        dtype=dtype,
        fill_value=_fill(meta, np.dtype(_DTYPES[dtype_name])),
        shard_rows=outer[0],
        chunk_rows=rows[0],
        array_codecs=arrays,
        byte_codecs=byte_codecs,
        index_at_end=index_at_end,
        index_crc=index_crc,
        key_prefix=f"c{sep}" if key["name"] == "default" else "",
        key_sep=sep,
        indexed=inner is not None,
    )


_DTYPES = {
    n: n
    for n in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64",
    )
}  # fmt: skip


class ShardFile:
    """One shard file of one array: index read once, then row ranges read with one ``read``
    each and decoded into the caller's arrays. ``f``: a seekable binary file, or None when
    the shard was never written (every row reads as the fill value)."""

    def __init__(self, layout: ShardLayout, f, what: str) -> None:
        self.layout, self.what, self._f = layout, what, f
        self._array_decoders = [array_decoder(c) for c in reversed(layout.array_codecs)]
        names = [c["name"] for c in layout.byte_codecs]
        self._crcs = names.count("crc32c")
        self._compressor = next((n for n in names if n in COMPRESSORS), None)
        self._index = self._read_index() if f is not None else None

    def close(self) -> None:
        if self._f is not None:
            self._f.close()

    def __enter__(self) -> ShardFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_index(self) -> np.ndarray:
        lay, f = self.layout, self._f
        if not lay.indexed:  # the whole file is the one chunk
            size = f.seek(0, 2)
            if size > _max_stored(lay):
                raise StoreCorruptError(f"{self.what}: {size} bytes, over its chunk's bound")
            return np.array([[0, size]], np.int64)
        n = lay.index_nbytes()
        size = f.seek(0, 2)
        if size < n:
            raise StoreCorruptError(f"{self.what}: {size} bytes, smaller than its index")
        f.seek(size - n if lay.index_at_end else 0)
        raw = memoryview(f.read(n))
        if lay.index_crc:
            raw = check_crc(raw, f"{self.what} index")
        index = np.frombuffer(raw, "<u8").reshape(-1, 2).astype(np.int64, copy=True)
        empty = index[:, 0] == -1  # 2^64 - 1 as int64
        full = index[~empty]
        if (full < 0).any() or (full.sum(1) > size).any() or (full[:, 1] > _max_stored(lay)).any():
            raise StoreCorruptError(f"{self.what}: index points outside the file")
        index[empty] = -1
        return index

    def chunk_bytes(self, j0: int, j1: int) -> list[memoryview | None]:
        """The stored bytes of inner chunks [j0, j1), read with one ``read`` (None: empty)."""
        index = self._index
        if index is None:
            return [None] * (j1 - j0)
        offs, sizes = index[j0:j1, 0], index[j0:j1, 1]
        full = offs >= 0
        if not full.any():
            return [None] * (j1 - j0)
        first, last = int(offs[full].min()), int((offs + sizes)[full].max())
        self._f.seek(first)
        buf = memoryview(self._f.read(last - first))
        if len(buf) != last - first:
            raise StoreCorruptError(f"{self.what}: truncated at byte {first + len(buf)}")
        return [
            buf[o - first : o - first + n] if o >= 0 else None
            for o, n in zip(offs.tolist(), sizes.tolist(), strict=True)
        ]

    def decode_chunk(self, buf: memoryview | None, dest: np.ndarray, j: int) -> None:
        """Inner chunk ``j`` (its stored bytes, or None) into ``dest`` (chunk_rows, *row_shape)."""
        if buf is None:
            dest[...] = self.layout.fill_value
        else:
            self._decode(buf, dest, j)

    def read_into(self, lo: int, hi: int, out: np.ndarray) -> None:
        """Rows [lo, hi) of this shard (shard-local, multiples of chunk_rows) into ``out``."""
        c = self.layout.chunk_rows
        j0 = lo // c
        for j, buf in enumerate(self.chunk_bytes(j0, -(-hi // c)), j0):
            self.decode_chunk(buf, out[j * c - lo : (j + 1) * c - lo], j)

    def _decode(self, buf: memoryview, dest: np.ndarray, j: int) -> None:
        lay = self.layout
        what = f"{self.what} chunk {j}"
        for _ in range(self._crcs):  # crc32c codecs follow the compressor (_split_codecs)
            buf = check_crc(buf, what)
        comp = self._compressor
        direct = not self._array_decoders and dest.flags.c_contiguous and dest.dtype == lay.dtype
        flat = dest.view(np.uint8).reshape(-1) if direct else np.empty(lay.chunk_nbytes, np.uint8)
        if comp is not None:
            decompress_into(comp, buf, flat, what)
        elif len(buf) == lay.chunk_nbytes:
            flat[:] = np.frombuffer(buf, np.uint8)
        else:
            raise StoreCorruptError(f"{what}: {len(buf)} bytes, expected {lay.chunk_nbytes}")
        if not direct:
            a = flat.view(lay.dtype).reshape(dest.shape)
            for decode in self._array_decoders:
                a = decode(a)
            dest[...] = a


def _max_stored(layout: ShardLayout) -> int:
    """The most bytes an inner chunk may take on disk: its raw size plus codec overheads."""
    return 2 * layout.chunk_nbytes + 65536


def read_layout(open_file: Callable, array_dir: str) -> ShardLayout | None:
    """The layout of ``<array_dir>/zarr.json`` read through ``open_file(rel)``."""
    with open_file(f"{array_dir}/zarr.json") as f:
        return shard_layout(json.loads(f.read()))


def open_shard(open_file: Callable, array_dir: str, layout: ShardLayout, shard: int) -> ShardFile:
    """Shard ``shard`` of the array at ``array_dir`` (a missing file reads as fill values)."""
    rel = f"{array_dir}/{layout.shard_key(shard)}"
    try:
        f = open_file(rel)
    except FileNotFoundError:
        f = None
    return ShardFile(layout, f, rel)


def read_shard_rows(
    open_file: Callable, array_dir: str, layout: ShardLayout, start: int, stop: int
) -> np.ndarray:
    """Rows [start, stop) of the array (any shards), as zarr-python's ``array[start:stop]``."""
    stop = min(stop, layout.shape[0])
    out = np.empty((max(stop - start, 0), *layout.row_shape), layout.dtype.newbyteorder("="))
    s, c = layout.shard_rows, layout.chunk_rows
    for shard in range(start // s, -(-stop // s)):
        lo, hi = max(start, shard * s) - shard * s, min(stop, (shard + 1) * s) - shard * s
        a, b = lo // c * c, -(-hi // c) * c
        tmp = np.empty((b - a, *layout.row_shape), out.dtype)
        with open_shard(open_file, array_dir, layout, shard) as sf:
            sf.read_into(a, b, tmp)
        out[shard * s + lo - start : shard * s + hi - start] = tmp[lo - a : hi - a]
    return out

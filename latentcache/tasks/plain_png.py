"""Plain 8-bit grayscale PNGs: every row unfiltered (filter byte 0), one zlib stream.

::

    write   signature, IHDR (8-bit, colour type 0, no interlace), one IDAT (zlib level 9 of
            the rows, each behind its 0 filter byte), IEND: a standard PNG that any reader
            (Pillow, plain webdataset) decodes; for masks smaller than Pillow's own, whose
            adaptive filters do not help long runs of one class
    read    only that layout: chunks and CRCs checked, the size agreed before anything is
            inflated, the inflation bounded to the rows' bytes; the pixels are the inflated
            rows without their filter bytes (no unfiltering pass, no image object)
            ─► None for anything else (another writer's filters, other chunks, a size or a
            stream that does not agree), for the caller's full decoder to take or refuse

Reading this way takes about half of what Pillow takes for a VOC-sized mask: the loader
decodes one per sample.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["write_plain_png", "read_plain_png"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR = struct.Struct(">IIBBBBB")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_plain_png(a: np.ndarray) -> bytes:
    """An (H, W) uint8 array as a plain 8-bit grayscale PNG."""
    a = np.asarray(a)
    if a.ndim != 2 or a.dtype != np.uint8 or 0 in a.shape:
        raise ValueError(f"array is {a.shape} {a.dtype}, expected non-empty (H, W) uint8")
    h, w = a.shape
    rows = np.zeros((h, w + 1), np.uint8)
    rows[:, 1:] = a
    return (
        SIGNATURE
        + _chunk(b"IHDR", _IHDR.pack(w, h, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


def _chunks(data: bytes):
    """(kind, body) of each chunk with a valid CRC; None as soon as one is malformed."""
    pos = len(SIGNATURE)
    while pos < len(data):
        if pos + 12 > len(data):
            yield None
            return
        n, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + n
        body = data[pos + 8 : end - 4]
        if end > len(data) or struct.unpack_from(">I", data, end - 4)[0] != zlib.crc32(
            data[pos + 4 : end - 4]
        ):
            yield None
            return
        yield kind, body
        pos = end


def read_plain_png(data: bytes, image_hw: tuple[int, int]) -> np.ndarray | None:
    """The (H, W) uint8 pixels of ``data`` if it is a plain PNG (see module docstring) of
    exactly ``image_hw``, else None (nothing inflated past ``H * (W + 1)`` bytes)."""
    if not data.startswith(SIGNATURE):
        return None
    chunks = _chunks(data)
    first = next(chunks, None)
    if first is None or first[0] != b"IHDR" or len(first[1]) != _IHDR.size:
        return None
    w, h, depth, colour, comp, filt, interlace = _IHDR.unpack(first[1])
    if (h, w) != tuple(image_hw) or (depth, colour, comp, filt, interlace) != (8, 0, 0, 0, 0):
        return None
    idat, ended = [], False
    for c in chunks:
        if c is None or ended or c[0] not in (b"IDAT", b"IEND"):
            return None
        ended = c[0] == b"IEND"
        if not ended:
            idat.append(c[1])
    if not ended:
        return None
    size = h * (w + 1)
    z = zlib.decompressobj()
    try:
        raw = z.decompress(b"".join(idat), size + 1)
    except zlib.error:
        return None
    if len(raw) != size or not z.eof or z.unconsumed_tail or z.unused_data:
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(h, w + 1)
    if rows[:, 0].any():  # another writer's filters: the caller's decoder unfilters
        return None
    return np.ascontiguousarray(rows[:, 1:])

"""Plain PNG masks: what the writer makes, Pillow and plain webdataset read as the same
indices; the reader takes only that layout, bounded, and leaves any other PNG (Pillow's
filtered ones, corrupt, oversized, other chunks) to the full decoder, which still reads
Pillow-written masks of older stores."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from seg_fixtures import blob_mask

from latentcache.tasks.plain_png import read_plain_png, write_plain_png
from latentcache.tasks.segmentation import decode_mask_png, mask_png


def _pillow_png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a, "L").save(buf, "PNG", compress_level=9)  # adaptive filters
    return buf.getvalue()


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    return blob_mask(75, 101, [3, 7, 12])


def test_written_masks_read_back_everywhere_and_are_smaller(mask) -> None:
    import webdataset as wds

    data = mask_png(mask)
    assert np.array_equal(np.array(Image.open(io.BytesIO(data))), mask)
    assert Image.open(io.BytesIO(data)).mode == "L"
    assert np.array_equal(wds.autodecode.imagehandler("l8")("mask.png", data), mask)
    got = read_plain_png(data, mask.shape)
    assert got.flags.writeable and np.array_equal(got, mask)
    assert np.array_equal(decode_mask_png(data, mask.shape, (100, 200)), mask)
    assert len(data) < len(_pillow_png(mask))


def _with(data: bytes, kind: bytes, body: bytes) -> bytes:
    """``data`` with a chunk ``kind`` inserted before IEND."""
    return data[:-12] + _chunk(kind, body) + data[-12:]


def test_anything_else_is_left_to_the_full_decoder(mask) -> None:
    data = mask_png(mask)
    pillow = _pillow_png(mask)
    assert read_plain_png(pillow, mask.shape) is None  # Pillow's filtered rows...
    assert np.array_equal(decode_mask_png(pillow, mask.shape, (100, 200)), mask)  # ...read
    assert read_plain_png(data, (75, 100)) is None  # another size
    assert read_plain_png(data[:-20], mask.shape) is None  # truncated
    flipped = bytearray(data)
    flipped[60] ^= 1  # a byte of the IDAT body: its CRC fails
    assert read_plain_png(bytes(flipped), mask.shape) is None
    assert read_plain_png(_with(data, b"tEXt", b"a\0b"), mask.shape) is None
    assert read_plain_png(data + b"junk", mask.shape) is None
    with pytest.raises(ValueError, match="truncated or corrupt|not a PNG"):
        decode_mask_png(bytes(flipped), mask.shape, (100, 200))


def test_an_inflation_past_the_declared_rows_stops_at_them() -> None:
    h, w = 4, 5
    rows = zlib.compress(b"\0" * (h * (w + 1)) * 1000)  # inflates 1000x past 4 rows
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    data = write_plain_png(np.zeros((h, w), np.uint8))
    bomb = data[:8] + data[8:33] + _chunk(b"IDAT", rows) + data[-12:]
    assert data[16:29] == ihdr
    assert read_plain_png(bomb, (h, w)) is None


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

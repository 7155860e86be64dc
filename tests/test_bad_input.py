"""Bad files are skipped with their reason; odd modes and sizes encode; counts reconcile."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentcache.config import EncodeConfig
from latentcache.datasets.base import Sample
from latentcache.errors import SampleError
from latentcache.images import load_image
from latentcache.pipeline.encode import run_encode
from latentcache.store import open_store
from latentcache.store.zarr_store import read_rows


def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo(photo_images) -> Image.Image:
    return Image.fromarray(photo_images[0])  # 200x232 RGB


def _bad_files(photo: Image.Image) -> dict[str, bytes]:
    jpeg = _png(photo, "JPEG", quality=90)
    bomb = _png(Image.new("1", (10_000, 10_000)))  # 100 Mpx in ~12 KB: over Pillow's 89 Mpx limit
    return {
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "empty.jpg": b"",
        "notes.jpg": b"this is a text file, not an image\n",
        "bomb.png": bomb,
    }


def _odd_files(photo: Image.Image) -> dict[str, tuple[bytes, tuple[int, int]]]:
    """name -> (bytes, expected (H, W) after EXIF orientation)."""
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 232 wide x 200 high, shown 200 wide x 232 high
    pal = photo.convert("P", palette=Image.Palette.ADAPTIVE)
    pal.info["transparency"] = 0
    sixteen = Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
    return {
        "gray.png": (_png(photo.convert("L")), (200, 232)),
        "cmyk.jpg": (_png(photo.convert("CMYK"), "JPEG"), (200, 232)),
        "sixteen.png": (_png(sixteen), (200, 232)),
        "alpha.png": (_png(rgba), (200, 232)),
        "palette.png": (_png(pal), (200, 232)),
        "onepixel.png": (_png(Image.new("RGB", (1, 1), (200, 10, 10))), (1, 1)),
        "rotated.jpg": (_png(photo, "JPEG", exif=exif.tobytes()), (232, 200)),
        "photo.webp": (_png(photo, "WEBP"), (200, 232)),
        "bilevel.png": (_png(photo.convert("1")), (200, 232)),
    }


def test_sixteen_bit_keeps_its_range(photo):
    gray = np.asarray(photo.convert("L"))
    sixteen = Image.fromarray(gray.astype(np.uint16) * 257)
    rgb = load_image(_png(sixteen)).rgb
    np.testing.assert_array_equal(rgb[..., 0], gray)  # not clipped to 255 as convert("RGB") would


def test_exif_orientation_is_applied(photo):
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb = load_image(_png(photo, "JPEG", exif=exif.tobytes())).rgb
    assert rgb.shape == (232, 200, 3)


@pytest.mark.parametrize("name", sorted(_bad_files(Image.new("RGB", (8, 8)))))
def test_each_bad_file_raises_a_reason(photo, name):
    with pytest.raises(SampleError) as err:
        load_image(_bad_files(photo)[name])
    assert str(err.value)


def test_bad_and_odd_files_in_one_dataset(tmp_path, photo, tiny_codec):
    root = tmp_path / "data" / "things"
    root.mkdir(parents=True)
    for name, data in _bad_files(photo).items():
        (root / name).write_bytes(data)
    odd = _odd_files(photo)
    for name, (data, _) in odd.items():
        (root / name).write_bytes(data)
    out = tmp_path / "store"
    result = run_encode(
        EncodeConfig(
            dataset="imagefolder",
            data_root=str(tmp_path / "data"),
            out=str(out),
            shard_size=4,
            workers=0,
        ),
        tiny_codec,
    )
    m = result.manifest
    assert m["totals"] == {**m["totals"], "indexed": 14, "stored": 9, "failed": 5}
    reasons = {Path(f["path"]).name: f["reason"] for f in m["failures"]}
    assert set(reasons) == set(_bad_files(photo))
    assert "decompression bomb" in reasons["bomb.png"]
    assert "empty" in reasons["empty.jpg"]
    assert "truncated" in reasons["truncated.jpg"] or "cannot decode" in reasons["truncated.jpg"]
    store = open_store(out)
    zs = store.zarr_split("train")
    rows = read_rows(zs.group, 0, len(zs), ["key", "image_size"])
    sizes = dict(zip(rows["key"], map(tuple, rows["image_size"]), strict=True))
    for name, (_, hw) in odd.items():
        assert sizes[f"things/{Path(name).stem}"] == hw, name
    assert sum(1 for _ in zs) == 9


def test_a_file_vanishing_after_indexing_is_recorded(tmp_path, tiny_model):
    from latentcache.pipeline.shard import ShardSettings, encode_samples

    settings = ShardSettings(str(tmp_path), str(tmp_path), ("zarr",), "index", 10**8, 4, "cpu", {})
    out = list(
        encode_samples(tiny_model, [Sample("gone", "gone.png", 0, "train")], tmp_path, settings)
    )
    assert "unreadable file" in out[0].reason

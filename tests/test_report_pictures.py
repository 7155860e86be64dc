"""The segmentation picture sheet (torfason Fig. 5): image | decoded | truth | prediction."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from latentcache.datasets import build_index
from latentcache.datasets.masks import read_mask
from latentcache.report.segmentation import SheetRow, colorize, picture_sheet


@pytest.fixture(scope="module")
def demo_seg(tmp_path_factory):
    return build_index("demo-seg", tmp_path_factory.mktemp("data") / "demo-seg")


def _jpeg(rgb: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=20)
    return np.asarray(Image.open(buf).convert("RGB"))


def test_sheet_of_demo_pictures(demo_seg, tmp_path):
    rows = []
    for i, s in enumerate(demo_seg.split("test")[:3]):
        image = np.asarray(Image.open(demo_seg.root / s.path).convert("RGB"))
        truth = read_mask(demo_seg.root / s.target)
        prediction = np.where(truth == 255, 0, truth).astype(np.uint8)
        prediction[:16] = 1  # a wrong band on top
        decoded = _jpeg(image) if i else None
        rows.append(SheetRow(s.key, image, decoded, truth, prediction, bpp=0.5 if i else None))
    path = picture_sheet(rows, demo_seg.classes, tmp_path / "sheet.png", title="demo-seg")
    sheet = Image.open(path)
    assert sheet.size[0] > sheet.size[1] > 300 and path.stat().st_size > 20_000


def test_colours_and_checks():
    mask = np.array([[0, 15], [255, 1]], dtype=np.uint8)
    rgb = colorize(mask)
    assert rgb.shape == (2, 2, 3) and tuple(rgb[1, 0]) == (224, 224, 192)
    assert tuple(rgb[0, 1]) == (192, 128, 128) and tuple(rgb[0, 0]) == (0, 0, 0)
    with pytest.raises(ValueError, match="sizes"):
        SheetRow("k", np.zeros((4, 5, 3), np.uint8), None, mask, mask)
    with pytest.raises(ValueError, match="at least one"):
        picture_sheet([], ("a",), "x.png")


def test_rows_from_a_voc_store(voc_root, tmp_path, tiny_codec):
    """Truth, decoded pixels and originals come from the store and the dataset it names;
    the prediction from a real (untrained) 1x1 convolution on y_hat, upsampled to the canvas
    and cut to the image through the row's canvas offset."""
    import torch

    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode
    from latentcache.report.segmentation import sheet_rows
    from latentcache.store import open_store

    config = EncodeConfig(
        dataset="voc", data_root=str(voc_root), out=str(tmp_path / "s"), workers=0
    )
    run_encode(config, tiny_codec)
    store = open_store(tmp_path / "s")
    torch.manual_seed(0)
    head = torch.nn.Conv2d(store.num_channels, 21, 1)

    def predict(row: dict) -> np.ndarray:
        y = torch.as_tensor(np.asarray(row["y_hat"], dtype=np.float32))[None]
        logits = torch.nn.functional.interpolate(head(y), scale_factor=16, mode="bilinear")
        (top, left), (h, w) = row["canvas_offset"], row["image_size"]
        return logits[0, :, top : top + h, left : left + w].argmax(0).numpy().astype(np.uint8)

    rows = sheet_rows(store, "val", predict, codec=tiny_codec, n=3)
    index = build_index("voc", voc_root)
    by_key = {s.key: s for s in index.samples}
    assert [r.key for r in rows] == sorted(s.key for s in index.split("val"))  # 2 in val
    for r in rows:
        sample = by_key[r.key]
        np.testing.assert_array_equal(r.truth, read_mask(voc_root / sample.target))
        original = np.asarray(Image.open(voc_root / sample.path).convert("RGB"))
        np.testing.assert_array_equal(r.image, original)
        assert r.decoded.shape == original.shape and r.prediction.shape == r.truth.shape
        assert 0 < r.bpp < 24
    assert picture_sheet(rows, index.classes, tmp_path / "voc.png").stat().st_size > 10_000

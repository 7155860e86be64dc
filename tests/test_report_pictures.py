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

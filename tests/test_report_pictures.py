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
    from latentcache.report.pictures import sheet_rows
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


def test_eval_rows_cut_truth_and_prediction_to_each_image():
    """Two images on one padded canvas at different offsets: each row is its own image's
    window of the mask canvas and of the logits' argmax, which differ on purpose."""
    import torch

    from latentcache.report.segmentation import eval_rows

    g = torch.Generator().manual_seed(0)
    canvas = torch.randint(0, 3, (2, 48, 64), generator=g, dtype=torch.uint8)
    pattern = (canvas.long() + 1) % 3  # a prediction unlike the truth everywhere
    logits = torch.nn.functional.one_hot(pattern, 3).permute(0, 3, 1, 2).float()
    batch = {
        "key": ["a", "b"],
        "canvas_offset": torch.tensor([[5, 7], [0, 0]]),
        "image_size": torch.tensor([[33, 41], [48, 64]]),
    }
    rows = eval_rows(batch, logits, canvas)
    assert [r.key for r in rows] == ["a", "b"] and rows[0].hw == (33, 41)
    np.testing.assert_array_equal(rows[0].truth, canvas[0, 5:38, 7:48].numpy())
    np.testing.assert_array_equal(rows[0].prediction, pattern[0, 5:38, 7:48].numpy())
    np.testing.assert_array_equal(rows[1].prediction, pattern[1].numpy())
    assert rows[0].image is None and rows[0].bpp is None


def test_with_pixels_finds_originals_decoded_images_and_rates(voc_root, tmp_path, tiny_codec):
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode
    from latentcache.report.pictures import with_pixels
    from latentcache.store import open_store

    config = EncodeConfig(
        dataset="voc", data_root=str(voc_root), out=str(tmp_path / "s"), workers=0
    )
    run_encode(config, tiny_codec)
    store = open_store(tmp_path / "s")
    index = build_index("voc", voc_root)
    sample = index.split("val")[1]  # the second row: looked up by key, not by position
    truth = read_mask(voc_root / sample.target)
    row = SheetRow(sample.key, None, None, truth, truth)
    (got,) = with_pixels(store, "val", [row], tiny_codec)
    original = np.asarray(Image.open(voc_root / sample.path).convert("RGB"))
    np.testing.assert_array_equal(got.image, original)
    # the tiny codec is untrained: its decoded image is the one sheet_rows decodes by position
    from latentcache.report.pictures import sheet_rows

    def zeros(r):
        return np.zeros([int(v) for v in r["image_size"]], np.uint8)

    (same,) = [r for r in sheet_rows(store, "val", zeros, tiny_codec) if r.key == row.key]
    np.testing.assert_array_equal(got.decoded, same.decoded)
    assert got.decoded.shape == original.shape and got.decoded.dtype == np.uint8
    bpps = store.zarr_split("val").read(0, 2)
    assert got.bpp == pytest.approx(float(bpps["bpp"][list(bpps["key"]).index(sample.key)]))
    (bare,) = with_pixels(store, "val", [SheetRow("nokey", None, None, truth, truth)])
    assert bare.image is None and bare.decoded is None and bare.bpp is None

"""The demo-seg dataset: generated offline, matches its committed plan, masks are exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from latentcache.datasets import build_index
from latentcache.datasets.demo import pixels_sha256
from latentcache.datasets.demo_seg import (
    CLASSES,
    SIZE,
    TEXTURE_BANDS,
    build_manifest,
    dump_manifest,
    manifest_path,
    shape_mask,
    source,
)
from latentcache.datasets.masks import read_mask
from latentcache.errors import DatasetNotFoundError


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(manifest_path().read_text())


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return build_index("demo-seg", tmp_path_factory.mktemp("data") / "demo-seg")


def test_committed_plan_is_what_the_code_builds(manifest):
    assert dump_manifest(build_manifest()) == manifest_path().read_text()
    assert manifest["classes"] == list(CLASSES) == ["background", "brick", "grass", "gravel"]


def test_splits_share_no_source_pixels(manifest):
    h, w = SIZE
    used = {}
    for item in manifest["images"]:
        regions = [(item["background"], item["by"], item["bx"])]
        regions += [(CLASSES[s["cls"]], s["ty"], s["tx"]) for s in item["shapes"]]
        for name, y, x in regions:
            shape = tuple(manifest["sources"][name]["shape"][:2])
            cover = used.setdefault((name, item["split"]), np.zeros(shape, bool))
            assert y + h <= shape[0] and x + w <= shape[1]
            cover[y : y + h, x : x + w] = True
        for s in item["shapes"]:
            top, end = TEXTURE_BANDS[item["split"]]
            assert top <= s["ty"] and s["ty"] + h <= end
    for (name, split), cover in used.items():
        for other in {"train", "validate", "test"} - {split}:
            if (name, other) in used:
                assert not (cover & used[name, other]).any(), (name, split, other)


def test_generated_files_are_exact(generated, manifest):
    assert generated.task == "segmentation" and generated.classes == CLASSES
    assert [len(generated.split(s)) for s in ("train", "validate", "test")] == [144, 36, 36]
    by_key = {item["key"]: item for item in manifest["images"]}
    counts = np.zeros(256, dtype=np.int64)
    for s in generated.samples:
        rgb = np.asarray(Image.open(generated.root / s.path))
        mask = read_mask(generated.root / s.target)
        assert rgb.shape == (*SIZE, 3) and mask.shape == SIZE and s.label == -1
        assert pixels_sha256(rgb) == by_key[s.key]["image_sha256"]
        assert pixels_sha256(mask) == by_key[s.key]["mask_sha256"]
        counts += np.bincount(mask.ravel(), minlength=256)
    assert set(np.flatnonzero(counts)) == {0, 1, 2, 3, 255}
    fractions = counts[:4] / counts.sum()
    assert fractions.min() > 0.08 and counts[255] / counts.sum() < 0.06  # every class present


def test_mask_says_which_texture_is_under_each_pixel(generated, manifest):
    """Where the mask says class c, the image is the recorded tinted crop of texture c."""
    item = next(i for i in manifest["images"] if len(i["shapes"]) >= 2)
    split, name = item["key"].split("/")
    rgb = np.asarray(Image.open(generated.root / split / "images" / f"{name}.png")).astype(int)
    mask = read_mask(generated.root / split / "masks" / f"{name}.png")
    h, w = SIZE
    top = item["shapes"][-1]  # the last shape is drawn on top of the others
    tex = source(CLASSES[top["cls"]])[top["ty"] : top["ty"] + h, top["tx"] : top["tx"] + w]
    expected = (tex[..., None].astype(int) * np.array(top["tint"]) + 500) // 1000
    under = shape_mask(top)
    assert under.sum() > 100 and set(np.unique(mask[under])) <= {top["cls"], 255}
    np.testing.assert_array_equal(rgb[under], expected[under])
    photo = source(item["background"])[item["by"] : item["by"] + h, item["bx"] : item["bx"] + w]
    np.testing.assert_array_equal(rgb[mask == 0], photo[mask == 0])


def test_missing_files_are_reported(tmp_path):
    root = tmp_path / "demo-seg"
    build_index("demo-seg", root)
    (root / "test" / "masks" / "test_003.png").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks 1 files .*test_003.png"):
        build_index("demo-seg", root)

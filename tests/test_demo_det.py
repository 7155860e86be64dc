"""The demo-det dataset: generated offline, matches its committed plan, boxes are exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from latentcache.datasets import build_index
from latentcache.datasets.boxes import load_boxes
from latentcache.datasets.demo import pixels_sha256
from latentcache.datasets.demo_det import (
    CLASSES,
    COUNTS,
    OBJECTS,
    SIZE,
    build_manifest,
    manifest_path,
    object_size,
    source,
)
from latentcache.datasets.demo_seg import dump_manifest
from latentcache.errors import DatasetNotFoundError


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(manifest_path().read_text())


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return build_index("demo-det", tmp_path_factory.mktemp("data") / "demo-det")


def test_committed_plan_is_what_the_code_builds(manifest):
    assert dump_manifest(build_manifest()) == manifest_path().read_text()
    assert manifest["classes"] == list(CLASSES) == ["cat", "cup", "shuttle"]


def test_backgrounds_of_different_splits_share_no_pixel(manifest):
    h, w = SIZE
    used: dict = {}
    for item in manifest["images"]:
        shape = tuple(manifest["sources"][item["background"]]["shape"][:2])
        assert item["by"] + h <= shape[0] and item["bx"] + w <= shape[1]
        cover = used.setdefault((item["background"], item["split"]), np.zeros(shape, bool))
        cover[item["by"] : item["by"] + h, item["bx"] : item["bx"] + w] = True
    for (name, split), cover in used.items():
        for other in set(COUNTS) - {split}:
            if (name, other) in used:
                assert not (cover & used[name, other]).any(), (name, split, other)


def test_objects_fit_do_not_overlap_and_every_class_is_in_every_split(manifest):
    seen = set()
    for item in manifest["images"]:
        objs = item["objects"]
        assert 1 <= len(objs) <= 3
        for i, o in enumerate(objs):
            assert 0 <= o["x"] and o["x"] + o["w"] <= SIZE[1]
            assert 0 <= o["y"] and o["y"] + o["h"] <= SIZE[0]
            assert (o["h"], o["w"]) == object_size(o["cls"], max(o["h"], o["w"]))
            seen.add((item["split"], o["cls"]))
            for p in objs[:i]:
                apart_x = o["x"] >= p["x"] + p["w"] or p["x"] >= o["x"] + o["w"]
                apart_y = o["y"] >= p["y"] + p["h"] or p["y"] >= o["y"] + o["h"]
                assert apart_x or apart_y
    assert seen == {(s, c) for s in COUNTS for c in range(len(CLASSES))}


def test_generated_files_and_boxes_are_exact(generated, manifest):
    assert generated.task == "detection" and generated.classes == CLASSES
    assert generated.options["category_ids"] == [1, 2, 3]
    assert [len(generated.split(s)) for s in COUNTS] == list(COUNTS.values())
    by_key = {item["key"]: item for item in manifest["images"]}
    for s in generated.samples:
        rgb = np.asarray(Image.open(generated.root / s.path))
        assert rgb.shape == (*SIZE, 3) and s.label == -1
        item = by_key[s.key]
        assert pixels_sha256(rgb) == item["image_sha256"]
        got = load_boxes(generated.root, s.target, SIZE, generated.options["category_ids"])
        want = [[o["x"], o["y"], o["x"] + o["w"], o["y"] + o["h"]] for o in item["objects"]]
        np.testing.assert_array_equal(got.boxes, np.array(want, np.float32))
        assert got.labels.tolist() == [o["cls"] for o in item["objects"]]
        assert not got.iscrowd.any() and not got.dropped


def test_inside_a_box_is_its_object_photo(generated, manifest):
    """The pixels of a box are the planned crop of its object's photo (mirrored if planned)."""
    item = next(
        i for i in manifest["images"] if any(o["flip"] and o["cls"] == 0 for o in i["objects"])
    )
    rgb = np.asarray(Image.open(generated.root / f"{item['key']}.png")).astype(int)
    o = next(o for o in item["objects"] if o["flip"] and o["cls"] == 0)
    name, top, bottom, left, right = OBJECTS["cat"]
    crop = source(name)[top + o["dy"] : bottom + o["dy"], left + o["dx"] : right + o["dx"]]
    inside = rgb[o["y"] : o["y"] + o["h"], o["x"] : o["x"] + o["w"]]
    # nearest pixel centres: box pixel (i, j) comes from crop row (2i + 1) * ch // (2h)
    i, j = o["h"] // 2, 3
    ch, cw = crop.shape[:2]
    want = crop[(2 * i + 1) * ch // (2 * o["h"]), (2 * j + 1) * cw // (2 * o["w"])]
    np.testing.assert_array_equal(inside[i, o["w"] - 1 - j], want)  # mirrored
    assert np.abs(inside.mean(axis=(0, 1)) - crop.mean(axis=(0, 1))).max() < 12


def test_the_cocofolder_adapter_reads_the_same_files(generated):
    other = build_index("cocofolder", generated.root)
    assert other.classes == generated.classes
    assert [s.to_dict() for s in other.samples] == [s.to_dict() for s in generated.samples]


def test_missing_files_are_reported(tmp_path):
    root = tmp_path / "demo-det"
    build_index("demo-det", root)
    (root / "test" / "test_003.png").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks 1 files .*test_003.png"):
        build_index("demo-det", root)

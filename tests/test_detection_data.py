"""Detection datasets on real files: COCO-2017, VOC and COCO-format folders, box reading and
validation (what is refused, what is repaired)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from detection_fixtures import (
    coco_json,
    photos,
    save_jpeg,
    voc_xml,
    write_coco_tree,
    write_voc_tree,
)

from latentcache.datasets import build_index
from latentcache.datasets.boxes import (
    MAX_BOXES,
    BoxTargets,
    RawBoxes,
    load_boxes,
    read_boxes,
    validate_boxes,
)
from latentcache.datasets.voc_det import VOC_CLASSES
from latentcache.errors import ConfigError, DatasetNotFoundError, SampleError
from latentcache.images import load_image

REPO = Path(__file__).resolve().parents[1]


def _size(root: Path, sample) -> tuple[int, int]:
    return load_image((root / sample.path).read_bytes()).rgb.shape[:2]


def _boxes(index, key: str) -> BoxTargets:
    s = next(s for s in index.samples if s.key == key)
    return load_boxes(index.root, s.target, _size(index.root, s), index.options["category_ids"])


# --- COCO -----------------------------------------------------------------------------------


def test_coco_index_categories_splits_and_counts_warning(tmp_path, caplog):
    write_coco_tree(tmp_path)
    with caplog.at_level(logging.WARNING):
        index = build_index("coco", tmp_path)
    assert index.task == "detection"
    assert index.classes == ("person", "cat", "cup")  # by original id 1, 3, 7
    assert index.options["category_ids"] == [1, 3, 7]
    assert {s.split for s in index.samples} == {"train", "validate"}
    val = index.split("validate")
    assert [s.key for s in val] == ["val2017/000000000021"]  # no annotations: still listed
    assert val[0].target == "annotations/instances_val2017.json#21"
    assert all(s.label == -1 for s in index.samples)
    assert "differ from the official counts" in caplog.text and "118,287" in caplog.text


def test_coco_boxes_are_pixel_xyxy_with_contiguous_ids_and_crowd(tmp_path):
    index = build_index("coco", write_coco_tree(tmp_path))
    t = _boxes(index, "train2017/000000000011")
    np.testing.assert_allclose(t.boxes, [[10, 20, 60, 100], [100.5, 30, 140.5, 70]])
    assert t.boxes.dtype == np.float32
    assert t.labels.tolist() == [0, 1] and t.iscrowd.tolist() == [False, True]
    assert _boxes(index, "train2017/000000000012").labels.tolist() == [2]
    assert len(_boxes(index, "val2017/000000000021")) == 0


def test_coco_image_listed_but_missing_is_left_out_with_a_warning(tmp_path, caplog):
    write_coco_tree(tmp_path)
    (tmp_path / "train2017" / "000000000012.jpg").unlink()
    with caplog.at_level(logging.WARNING):
        index = build_index("coco", tmp_path)
    assert len(index.split("train")) == 1
    assert "lists 1 images that" in caplog.text


def test_coco_refuses_split_files_with_different_categories(tmp_path):
    write_coco_tree(tmp_path)
    ann = tmp_path / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    data["categories"] = data["categories"][:2]
    ann.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="other categories"):
        build_index("coco", tmp_path)


def test_coco_missing_and_malformed_annotation_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="instances_"):
        build_index("coco", tmp_path)
    write_coco_tree(tmp_path)
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        build_index("coco", tmp_path)


def test_cocofolder_reads_users_split_names(tmp_path):
    write_coco_tree(tmp_path, names=("train", "val"), ann_name="{}.json")
    index = build_index("cocofolder", tmp_path)
    assert index.split_names == ["train", "validate"]
    assert index.split("validate")[0].target == "annotations/val.json#21"
    assert len(_boxes(index, "train/000000000011")) == 2
    with pytest.raises(DatasetNotFoundError, match="annotations/<split>.json"):
        build_index("cocofolder", tmp_path / "train")


# --- VOC ------------------------------------------------------------------------------------


def test_voc_index_and_boxes(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        index = build_index("voc-det", write_voc_tree(tmp_path))
    assert index.root == tmp_path / "VOCdevkit"
    assert index.classes == VOC_CLASSES and index.options["category_ids"] == list(range(1, 21))
    assert [s.key for s in index.split("train")] == [
        "VOC2007/000005", "VOC2007/000007", "VOC2012/2008_000002",
    ]  # fmt: skip
    assert [s.key for s in index.split("test")] == ["VOC2007/000009"]
    assert "16,551" in caplog.text  # the official count, in the warning
    t = _boxes(index, "VOC2007/000005")
    np.testing.assert_allclose(t.boxes, [[10, 20, 60, 100], [100, 30, 140, 70]])  # 1-based
    assert t.labels.tolist() == [VOC_CLASSES.index("person"), VOC_CLASSES.index("cat")]
    assert t.iscrowd.tolist() == [False, True]  # difficult
    with pytest.raises(SampleError, match="'cup', not one of VOC's 20 classes"):
        _boxes(index, "VOC2007/000007")


def test_voc_classes_match_the_committed_list():
    committed = (REPO / "data_manifests" / "voc_det" / "classes.txt").read_text().split()
    assert tuple(committed) == VOC_CLASSES


def test_voc_bad_xml_is_a_sample_error(tmp_path):
    write_voc_tree(tmp_path)
    xml = tmp_path / "VOCdevkit" / "VOC2007" / "Annotations" / "000005.xml"
    xml.write_text("<annotation><object><name>cat</name>")
    with pytest.raises(SampleError, match="not valid XML"):
        read_boxes(tmp_path / "VOCdevkit", "VOC2007/Annotations/000005.xml")
    xml.write_text(voc_xml((10, 10), [("cat", ("a", 1, 5, 5), 0)]))
    with pytest.raises(SampleError, match="<xmin> is 'a', not a number"):
        read_boxes(tmp_path / "VOCdevkit", "VOC2007/Annotations/000005.xml")
    with pytest.raises(SampleError, match="is missing"):
        read_boxes(tmp_path / "VOCdevkit", "VOC2007/Annotations/nope.xml")


def test_voc_without_any_year_folder_is_not_found(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="VOC2007"):
        build_index("voc-det", tmp_path)


# --- validation -----------------------------------------------------------------------------


def _raw(boxes, cats=None, size=None):
    n = len(boxes)
    return RawBoxes.from_lists(boxes, cats or [1] * n, [0] * n, size)


@pytest.mark.parametrize(
    "boxes, cats, size, reason",
    [
        ([[0, 0, math.nan, 5]], None, None, "non-finite coordinate"),
        ([[0, 0, 4, math.inf]], None, None, "non-finite coordinate"),
        ([[5, 0, 2, 5]], None, None, "negative size"),
        ([[0, 0, 60, 5]], None, None, "lies outside the 50x40 image"),
        ([[-3, 0, 10, 5]], None, None, "lies outside"),
        ([[0, 0, 5, 5]], [99], None, "category 99, not one of the dataset's 3 categories"),
        ([[0, 0, 5, 5]], None, (50, 40), "declares a 40x50 image but the image is 50x40"),
    ],
)
def test_validation_refuses_with_one_line_reason(boxes, cats, size, reason):
    with pytest.raises(SampleError, match=reason) as info:
        validate_boxes(_raw(boxes, cats, size), (40, 50), [1, 3, 7])
    assert "\n" not in str(info.value)


def test_validation_clips_overhang_and_drops_zero_sized_boxes():
    raw = _raw([[-0.5, 2, 50.8, 10], [3, 3, 3, 9], [1, 1, 4, 4]], [1, 3, 7])
    t = validate_boxes(raw, (40, 50), [1, 3, 7])
    np.testing.assert_allclose(t.boxes, [[0, 2, 50, 10], [1, 1, 4, 4]])
    assert t.labels.tolist() == [0, 2]
    assert len(t.dropped) == 1 and "box 1" in t.dropped[0] and "zero width" in t.dropped[0]


def test_validation_bounds_the_number_of_boxes():
    raw = _raw(np.tile([0.0, 0.0, 1.0, 1.0], (MAX_BOXES + 1, 1)))
    with pytest.raises(SampleError, match="more than the limit"):
        validate_boxes(raw, (4, 4), [1])


def test_box_record_round_trip_and_hostile_records():
    t = validate_boxes(_raw([[1.25, 2, 30, 20]], [3]), (40, 50), [1, 3, 7])
    d = json.loads(json.dumps(t.to_dict()))
    back = BoxTargets.from_dict(d, (40, 50), 3)
    np.testing.assert_array_equal(back.boxes, t.boxes)
    assert back.labels.tolist() == [1] and back.iscrowd.tolist() == [False]
    for bad, reason in [
        ({"boxes": [[1, 2, 3]], "labels": [0], "iscrowd": [0]}, "malformed"),
        ({"boxes": [[1, 2, 3, 4]], "labels": [5], "iscrowd": [0]}, "category 5"),
        ({"boxes": [[1, 2, 99, 4]], "labels": [0], "iscrowd": [0]}, "outside"),
        ({"boxes": [[1, 2, 1, 4]], "labels": [0], "iscrowd": [0]}, "degenerate"),
        ({"boxes": []}, "must be an object"),
        ([1, 2], "must be an object"),
    ]:
        with pytest.raises(SampleError, match=reason):
            BoxTargets.from_dict(bad, (40, 50), 3)


def test_coco_malformed_annotation_fails_its_image_only(tmp_path):
    rgb = photos()[1]
    save_jpeg(tmp_path / "train" / "a.jpg", rgb)
    save_jpeg(tmp_path / "train" / "b.jpg", rgb)
    anns = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, "x", 3]},
        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0},
    ]
    data = coco_json([(1, "a.jpg", rgb), (2, "b.jpg", rgb)], anns)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.json").write_text(json.dumps(data))
    index = build_index("cocofolder", tmp_path)
    with pytest.raises(SampleError, match="annotation 0 is malformed"):
        _boxes(index, "train/a")
    assert len(_boxes(index, "train/b")) == 1
    with pytest.raises(SampleError, match="no image with id '9'"):
        read_boxes(tmp_path, "annotations/train.json#9")

"""The segmentation adapters (voc, segfolder) on real trees: JPEGs, palette PNGs, SBD .mat."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from seg_fixtures import write_segfolder, write_voc_tree

from latentcache.datasets import build_index
from latentcache.datasets.masks import read_mask
from latentcache.datasets.voc import read_classes, read_counts
from latentcache.errors import ConfigError, DatasetNotFoundError, SampleError

REPO = Path(__file__).resolve().parents[1]
# VOC train A B C, val D E; SBD train B D F G, val H C
A, B, C, D, E, F, G, H = (f"2008_{i:06d}" for i in range(1, 9))


@pytest.fixture(scope="module")
def voc_tree(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("voc")
    masks = write_voc_tree(root, [A, B, C], [D, E], sbd_train=[B, D, F, G], sbd_val=[H, C])
    return root, masks


def _by_key(index) -> dict:
    return {s.key: s for s in index.samples}


def test_voc_classes_are_the_official_21():
    classes = read_classes()
    assert len(classes) == read_counts()["classes"] == 21
    assert classes[0] == "background" and classes[15] == "person" and classes[-1] == "tvmonitor"
    assert read_counts()["splits"] == {
        "train": 1464,
        "val": 1449,
        "trainval": 2913,
        "train_aug": 10582,
    }


def test_voc_train_aug_is_sbd_and_voc_train_minus_val(voc_tree, caplog):
    root, masks = voc_tree
    with caplog.at_level(logging.WARNING, logger="latentcache.datasets.voc"):
        index = build_index("voc", root)
    assert index.task == "segmentation" and len(index.classes) == 21
    by_key = _by_key(index)
    assert sorted(s.key for s in index.split("train")) == [A, B, C, F, G, H]
    assert sorted(s.key for s in index.split("val")) == [D, E]  # D (in SBD train) only in val
    assert index.options == {
        "train_split": "train_aug",
        "train_split_requested": "train_aug",
        "sbd": "benchmark_RELEASE/dataset",
    }
    # the VOC mask wins where both exist; SBD-only images come from SBD's img/
    assert by_key[B].target == f"VOCdevkit/VOC2012/SegmentationClass/{B}.png"
    assert by_key[F].target == f"benchmark_RELEASE/dataset/cls/{F}.mat"
    assert by_key[F].path == f"benchmark_RELEASE/dataset/img/{F}.jpg"
    assert by_key[A].path == f"VOCdevkit/VOC2012/JPEGImages/{A}.jpg"
    for s in index.samples:
        assert s.label == -1
        which = "voc" if s.target.endswith(".png") else "sbd"
        np.testing.assert_array_equal(read_mask(root / s.target), masks[f"{which}/{s.key}"])
    assert 255 in read_mask(root / by_key[B].target)  # VOC's outlines kept as the ignore index
    # the tiny lists differ from the official counts: warned about, not refused
    text = caplog.text
    assert "lists 3 images, the official count is 1464" in text
    assert "lists 2 images, the official count is 1449" in text
    assert "lists 6 images, the official count is 10582" in text


def test_voc_prefers_voc_jpegs(tmp_path):
    write_voc_tree(tmp_path, [A], [D], sbd_train=[F], sbd_val=[], voc_images_for_sbd=True)
    index = build_index("voc", tmp_path)
    assert _by_key(index)[F].path == f"VOCdevkit/VOC2012/JPEGImages/{F}.jpg"
    assert _by_key(index)[F].target == f"benchmark_RELEASE/dataset/cls/{F}.mat"


def test_voc_train_split_option(voc_tree):
    root, _ = voc_tree
    index = build_index("voc", root, train_split="train")
    assert sorted(s.key for s in index.split("train")) == [A, B, C]
    assert index.options["train_split"] == "train" and index.options["sbd"] is None
    with pytest.raises(ConfigError, match=r'Invalid VOC train_split "aug"'):
        build_index("voc", root, train_split="aug")


def test_voc_without_sbd_trains_on_voc_train_and_says_so(tmp_path, caplog):
    write_voc_tree(tmp_path, [A, B], [C])
    with caplog.at_level(logging.WARNING, logger="latentcache.datasets.voc"):
        index = build_index("voc", tmp_path)
    assert [s.key for s in index.split("train")] == [A, B]
    assert index.options["train_split"] == "train"
    assert index.options["train_split_requested"] == "train_aug"
    lines = [r.getMessage() for r in caplog.records if "SBD not found" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "VOC2012 train (2 images)" in lines[0]


def test_voc_missing_files(tmp_path, caplog):
    write_voc_tree(tmp_path, [A, B, C], [D])
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages" / f"{A}.jpg").unlink()
    (voc / "SegmentationClass" / f"{B}.png").unlink()
    with caplog.at_level(logging.WARNING, logger="latentcache.datasets.voc"):
        index = build_index("voc", tmp_path)
    assert sorted(s.key for s in index.samples) == [B, C, D]  # the image-less one left out
    assert "1 of 4 listed images are missing" in caplog.text
    assert "1 indexed images have no mask file" in caplog.text
    with pytest.raises(SampleError, match=f"mask {B}.png: cannot read"):  # encode records it
        read_mask(tmp_path / _by_key(index)[B].target)


def test_voc_refuses_odd_lists_and_missing_roots(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"VOCdevkit/VOC2012/ImageSets.*--data-root"):
        build_index("voc", tmp_path)
    write_voc_tree(tmp_path, [A], [D])
    lists = tmp_path / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    (lists / "val.txt").write_text(f"{D}\n../../../etc/passwd\n")
    with pytest.raises(ConfigError, match=r"val.txt:2: '../../../etc/passwd' is not an image id"):
        build_index("voc", tmp_path)
    (lists / "val.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="val.txt is missing"):
        build_index("voc", tmp_path)


def test_voc_root_may_be_the_voc2012_folder(voc_tree):
    root, _ = voc_tree
    index = build_index("voc", root / "VOCdevkit" / "VOC2012")
    assert index.options["sbd"] is None
    assert [s.path for s in index.split("val")] == [f"JPEGImages/{D}.jpg", f"JPEGImages/{E}.jpg"]


def test_index_identity_names_the_task(voc_tree):
    root, _ = voc_tree
    a, b = build_index("voc", root), build_index("voc", root, train_split="train")
    assert a.sha256() != b.sha256()
    assert json.loads(json.dumps([s.to_dict() for s in a.samples]))[0]["target"]


# --- segfolder --------------------------------------------------------------------------

CLASSES = ["background", "sky", "grass", "brick"]


@pytest.mark.parametrize("layout", ["splits", "lists"])
@pytest.mark.parametrize("mask_format", ["palette", "grey"])
def test_segfolder_layouts(tmp_path, layout, mask_format):
    masks = write_segfolder(
        tmp_path, CLASSES, {"train": 4, "val": 2}, layout=layout, mask_format=mask_format
    )
    index = build_index("segfolder", tmp_path)
    assert index.task == "segmentation" and index.classes == tuple(CLASSES)
    assert [len(index.split(s)) for s in ("train", "validate")] == [4, 2]  # val -> validate
    for s in index.samples:
        assert s.label == -1 and "." not in s.key
        np.testing.assert_array_equal(read_mask(tmp_path / s.target), masks[s.path])


def test_shared_fixtures_index(voc_root, segfolder_root):
    """The session fixtures of conftest.py, for end-to-end tests elsewhere."""
    voc = build_index("voc", voc_root)
    assert [len(voc.split(s)) for s in ("train", "val")] == [6, 2]
    folder = build_index("segfolder", segfolder_root)
    assert [len(folder.split(s)) for s in ("train", "validate")] == [6, 2]


def test_segfolder_without_lists_is_all_train(tmp_path):
    write_segfolder(tmp_path, CLASSES, {"train": 3}, layout="lists")
    (tmp_path / "train.txt").unlink()
    assert {s.split for s in build_index("segfolder", tmp_path).samples} == {"train"}


def test_segfolder_gaps_are_counted_not_dropped(tmp_path, caplog):
    write_segfolder(tmp_path, CLASSES, {"train": 3, "test": 1})
    (tmp_path / "train" / "masks" / "train_001.png").unlink()
    (tmp_path / "test" / "images" / "test_003.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger="latentcache.datasets.segfolder"):
        index = build_index("segfolder", tmp_path)
    assert len(index.samples) == 3  # the mask-less image stays: encoding records its failure
    target = next(s.target for s in index.samples if s.key.endswith("train_001"))
    assert target == "train/masks/train_001.png" and not (tmp_path / target).exists()
    assert "1 of 3 images" in caplog.text and "1 mask files" in caplog.text


def test_segfolder_refusals(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="class list .*classes.txt is missing"):
        build_index("segfolder", tmp_path)
    write_segfolder(tmp_path, CLASSES, {"train": 2})
    (tmp_path / "classes.txt").write_text("a\nb\na\n")
    with pytest.raises(ConfigError, match=r"repeated: \['a'\]"):
        build_index("segfolder", tmp_path)
    (tmp_path / "classes.txt").write_text("".join(f"c{i}\n" for i in range(256)))
    with pytest.raises(ConfigError, match="1 to 255 distinct names"):
        build_index("segfolder", tmp_path)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    masks = tmp_path / "train" / "masks"
    (masks / "train_000.mat").write_bytes((masks / "train_000.png").read_bytes())
    with pytest.raises(ConfigError, match="two masks for 'train_000'"):
        build_index("segfolder", tmp_path)


def test_segfolder_list_paths_stay_inside(tmp_path):
    write_segfolder(tmp_path, CLASSES, {"train": 2}, layout="lists")
    (tmp_path / "train.txt").write_text("../outside\n")
    with pytest.raises(ConfigError, match="not a path under images/"):
        build_index("segfolder", tmp_path)


# --- through the encoder ------------------------------------------------------------------


def _encode(dataset: str, root: Path, out: Path, codec):
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    config = EncodeConfig(dataset=dataset, data_root=str(root), out=str(out), workers=0)
    return run_encode(config, codec)


def test_voc_masks_reach_the_store_as_the_dataset_gives_them(voc_root, tmp_path, tiny_codec):
    import zarr

    result = _encode("voc", voc_root, tmp_path / "store", tiny_codec)
    totals = result.manifest["totals"]
    assert (totals["indexed"], totals["stored"], totals["failed"]) == (8, 8, 0)
    index = build_index("voc", voc_root)
    group = zarr.open_group(str(tmp_path / "store" / "zarr" / "train"), mode="r")
    keys = [
        bytes(k).rstrip(b"\0").decode() if not isinstance(k, str) else k for k in group["key"][:]
    ]
    by_key = _by_key(index)
    for row, key in enumerate(keys):
        h, w = (int(v) for v in group["image_size"][row])
        expected = read_mask(voc_root / by_key[key].target)  # VOC PNG or SBD .mat
        np.testing.assert_array_equal(group["mask"][row][:h, :w], expected)


def test_segfolder_mask_failures_are_recorded(tmp_path, tiny_codec):
    write_segfolder(tmp_path / "data", CLASSES, {"train": 3, "val": 1})
    masks = tmp_path / "data" / "train" / "masks"
    (masks / "train_001.png").unlink()
    (masks / "train_002.png").write_bytes(b"junk")
    manifest = _encode("segfolder", tmp_path / "data", tmp_path / "store", tiny_codec).manifest
    reasons = sorted(f["reason"] for f in manifest["failures"])
    totals = manifest["totals"]
    assert (totals["indexed"], totals["stored"], totals["failed"]) == (4, 2, 2)
    assert reasons[0].startswith("mask train/masks/train_001.png: cannot read")  # dataset-relative
    assert reasons[1].startswith("mask train/masks/train_002.png: not an image")

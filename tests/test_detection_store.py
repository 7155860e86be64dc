"""Detection stores: COCO-JSON and VOC-XML fixtures encode into both layouts, boxes ragged in
Zarr and a plain-webdataset member, the task and categories in the manifest, bad annotations
recorded as failures, the store verifies, and the task's loader hooks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from detection_fixtures import write_coco_tree, write_voc_tree

from latentcache.datasets import build_index
from latentcache.datasets.boxes import load_boxes
from latentcache.images import load_image


def _encode(index, out, codec):
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    config = EncodeConfig(
        dataset=index.name, out=str(out), shard_size=2, workers=0, formats=("zarr", "webdataset")
    )
    return run_encode(config, codec, index=index)


@pytest.fixture(scope="module")
def coco(tmp_path_factory, tiny_codec):
    from latentcache.store import open_store

    index = build_index("coco", write_coco_tree(tmp_path_factory.mktemp("coco")))
    out = tmp_path_factory.mktemp("cocostore") / "store"
    _encode(index, out, tiny_codec)
    return index, open_store(out)


def _expected(index, key):
    s = next(s for s in index.samples if s.key == key)
    hw = load_image((index.root / s.path).read_bytes()).rgb.shape[:2]
    return load_boxes(index.root, s.target, hw, index.options["category_ids"])


def test_manifest_names_detection_and_its_category_ids(coco):
    index, store = coco
    m = store.manifest
    assert m["task"] == {"name": "detection", "category_ids": [1, 3, 7]}
    assert m["dataset"]["classes"] == ["person", "cat", "cup"]
    assert m["totals"]["indexed"] == m["totals"]["stored"] == 3 and m["totals"]["failed"] == 0


def test_zarr_boxes_are_ragged_through_offsets(coco):
    index, store = coco
    zs = store.zarr_split("train")
    group = zs.group
    assert group["ragged_offsets"].dtype == np.int64 and group["ragged_offsets"].shape == (2, 2)
    assert group["ragged/boxes/000000"].dtype == np.float32
    assert group["ragged/boxes/000000"].shape == (3, 4)  # 2 + 1 boxes in the shard of 2 rows
    assert group["ragged/box_labels/000000"].dtype == np.int32
    got = zs.read(0, len(zs))
    for i, key in enumerate(got["key"]):
        want = _expected(index, key)
        np.testing.assert_array_equal(got["boxes"][i], want.boxes)
        assert got["box_labels"][i].tolist() == want.labels.tolist()
        assert got["box_iscrowd"][i].astype(bool).tolist() == want.iscrowd.tolist()
    empty = store.zarr_split("validate").read(0, 1)
    assert empty["boxes"][0].shape == (0, 4)  # an image without annotations


def test_webdataset_boxes_decode_with_plain_webdataset(coco):
    import webdataset as wds

    index, store = coco
    seen = 0
    for s in wds.WebDataset(store.wds_shards("train"), shardshuffle=False).decode():
        want = _expected(index, s["__key__"])
        assert isinstance(s["boxes.json"], dict)
        np.testing.assert_allclose(s["boxes.json"]["boxes"], want.boxes)
        assert s["boxes.json"]["labels"] == want.labels.tolist()
        seen += 1
    assert seen == 2
    ours = {s["key"]: s for s in store.wds_samples("train")}
    for key, s in ours.items():
        np.testing.assert_array_equal(s["boxes"], _expected(index, key).boxes)


@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_the_loader_batches_whole_boxes_in_both_layouts(coco, fmt):
    from latentcache.train.data import StreamSpec, build_loader

    index, store = coco
    spec = StreamSpec(
        store=str(store.path), split="train", fmt=fmt, fields=("y_hat",), batch_size=4
    )
    (batch,) = list(build_loader(spec))
    assert len(batch["key"]) == 2 and batch["label"].tolist() == [-1, -1]
    for key, t in zip(batch["key"], batch["targets"], strict=True):
        want = _expected(index, key)  # ragged rows whole: never cut like image-shaped targets
        np.testing.assert_allclose(t["boxes"].numpy(), want.boxes)
        assert t["labels"].tolist() == want.labels.tolist()


def test_cache_refuses_ragged_boxes_in_one_line(coco):
    from latentcache.errors import ConfigError
    from latentcache.train.cache import sample_bytes

    with pytest.raises(ConfigError) as err:
        sample_bytes(coco[1], "train", ("y_hat",))
    assert "--cache off" in str(err.value) and "\n" not in str(err.value)


def test_detection_store_verifies(coco):
    from latentcache.store.verify import verify_store

    report = verify_store(coco[1])
    assert report.ok, report.problems


def test_hostile_boxes_member_is_refused_in_one_line(coco):
    from latentcache.store.wds_store import checked_raw_samples, parse_sample

    store = coco[1]
    limits = store.sample_limits("train")
    entries = store.wds_entries("train")
    rel = next(iter(entries))
    with store.open_file(rel) as f:
        raw = next(checked_raw_samples(f, entries[rel]))
    h, w = json.loads(raw["json"])["image_size"]
    for member, reason in [
        (b"[1, 2", "not JSON"),
        (json.dumps({"boxes": [[0, 0, w + 50, 5]], "labels": [0], "iscrowd": [0]}), "outside"),
        (json.dumps({"boxes": [[0, 0, 5, 5]], "labels": [-1], "iscrowd": [0]}), "category -1"),
    ]:
        data = member if isinstance(member, bytes) else member.encode()
        with pytest.raises(ValueError) as err:
            parse_sample({**raw, "boxes.json": data}, limits)
        assert reason in str(err.value) and "\n" not in str(err.value)


def test_voc_bad_annotation_is_a_recorded_failure(tmp_path, tiny_codec):
    index = build_index("voc-det", write_voc_tree(tmp_path / "voc"))
    m = _encode(index, tmp_path / "store", tiny_codec).manifest
    assert m["task"]["category_ids"] == list(range(1, 21))
    failures = m["failures"]
    assert [f["key"] for f in failures] == ["VOC2007/000007"]
    assert "'cup', not one of VOC's 20 classes" in failures[0]["reason"]
    assert m["totals"]["indexed"] == m["totals"]["stored"] + m["totals"]["failed"] == 4


def test_task_hooks_batch_and_crop_the_boxes(coco):
    import torch

    from latentcache.tasks import get_task

    index, store = coco
    task = get_task("detection")
    zs = store.zarr_split("train")
    got = zs.read(0, len(zs))
    samples = [{k: got[k][i] for k in got} for i in range(len(got["key"]))]
    batch = task.collate_targets(samples, (12, 16))
    t = task.targets_to(batch, torch.device("cpu"))["targets"]
    assert [len(x["boxes"]) for x in t] == [len(b) for b in got["boxes"]]
    assert t[0]["canvas_offset"] == tuple(got["canvas_offset"][0])
    whole = task.map_targets(batch, None, None, (12, 16))
    torch.testing.assert_close(whole[0]["boxes"], t[0]["boxes"])
    flip = (None, None, torch.tensor([True, True]))
    flipped = task.map_targets(batch, flip, None, (12, 16))
    assert [len(x["boxes"]) for x in flipped] == [len(x["boxes"]) for x in t]
    twice = task.map_targets({"targets": flipped}, flip, None, (12, 16))
    torch.testing.assert_close(twice[0]["boxes"], t[0]["boxes"])
    crop = (torch.tensor([0, 0]), torch.tensor([16, 16]), torch.tensor([False, False]))
    gone = task.map_targets(batch, crop, 4, (12, 20))  # cells 16..19: right of every image
    assert all(len(x["boxes"]) == 0 for x in gone)
    samples[0]["boxes"] = samples[0]["boxes"] + 1000.0  # hostile row from a store
    with pytest.raises(ValueError, match="outside"):
        task.collate_targets(samples, (12, 16))
    losses = {"a": torch.tensor(1.0), "b": torch.tensor(2.5)}
    assert float(task.loss(losses, t)) == 3.5
    assert task.make_meter(3).num_classes == 3


def test_hostile_ragged_arrays_are_refused(tmp_path, tiny_codec):
    import zarr

    from latentcache.config import EncodeConfig
    from latentcache.errors import StoreCorruptError
    from latentcache.pipeline.encode import run_encode
    from latentcache.store import open_store

    index = build_index("coco", write_coco_tree(tmp_path / "coco"))
    out = tmp_path / "store"
    run_encode(EncodeConfig(dataset="coco", out=str(out), shard_size=2, workers=0,
                            formats=("zarr",)), tiny_codec, index=index)  # fmt: skip
    group = zarr.open_group(out / "zarr" / "train", mode="r+")
    group["ragged_offsets"][1] = np.array([2, 9], dtype=np.int64)  # past the shard's 3 boxes
    with pytest.raises(StoreCorruptError, match="row 1's 2:9 lies outside its 3 entries"):
        open_store(out).zarr_split("train").read(0, 2)
    group["ragged_offsets"][1] = np.array([2, 3], dtype=np.int64)
    labels = group["ragged/box_labels"]
    labels.create_array("000000", shape=(3,), dtype="float64", overwrite=True)
    with pytest.raises(StoreCorruptError, match="float64 .* expected int32"):
        open_store(out).zarr_split("train").read(0, 2)

"""A segmentation store of real photos and masks encodes, trains a few steps and evaluates
in both layouts, through the CLI: the default model is the task's, --list-models shows the
models that fit the store, eval --json gives mIoU, per-class IoU and pixel accuracy."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from seg_helpers import SEG_CLASSES, encode_seg_store

from latentcache.cli.main import cli

torch.set_num_threads(1)

SMALL = ["--epochs", "1", "--batch-size", "3", "--model-opt", "base_width=4", "--crop", "3"]


@pytest.fixture(scope="module")
def seg_store_path(tmp_path_factory, tiny_codec):
    root = tmp_path_factory.mktemp("segtrain")
    encode_seg_store(root / "data", root / "store", tiny_codec)
    return root / "store"


@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_train_then_eval_json(seg_store_path, tmp_path, fmt):
    out = tmp_path / f"run-{fmt}"
    runner = CliRunner()
    args = ["train", str(seg_store_path), "--out", str(out), "--format", fmt, *SMALL]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"{out}: 1 epochs, mIoU" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "cresnet51-d"  # the segmentation task's default
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"eval_miou", "eval_pixel_accuracy", "train_loss"} <= set(record)
    pictures = ["--pictures", "0"] if fmt == "webdataset" else []  # default: 4
    args = ["eval", str(out), str(seg_store_path), "--split", "val", "--json", *pictures]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["task"] == "segmentation" and got["count"] == 2
    assert 0.0 <= got["miou"] <= 1.0 and 0.0 <= got["pixel_accuracy"] <= 1.0
    assert set(got["per_class_iou"]) == set(SEG_CLASSES)
    cm = torch.tensor(got["confusion"])
    assert got["pixels"] == int(cm.sum()) > 0
    assert got["pixel_accuracy"] == pytest.approx(float(cm.diag().sum() / cm.sum()))
    absent = [c for i, c in enumerate(SEG_CLASSES) if cm[i].sum() + cm[:, i].sum() == 0]
    assert all(got["per_class_iou"][c] is None for c in absent)
    if fmt == "webdataset":
        assert not (out / "pictures_val.png").exists()
    else:
        _check_pictures(out / "pictures_val.png", rows=2)


def _check_pictures(path, rows: int) -> None:
    """The picture sheet: a row of 4 pictures per sample (both val samples), the ground
    truth's classes in VOC's colours."""
    import numpy as np
    from PIL import Image

    from latentcache.report.segmentation import colorize

    with Image.open(path) as im:
        w, h = im.size
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert w > 2 * h / rows and h > 200 * rows
    drawn = {tuple(p) for p in np.unique(pixels, axis=0)}
    for c in range(1, len(SEG_CLASSES)):  # the checkerboard holds every class
        assert tuple(colorize(np.array([[c]]))[0, 0]) in drawn


def test_list_models_shows_the_models_that_fit_the_store(seg_store_path):
    result = CliRunner().invoke(cli, ["train", str(seg_store_path), "--list-models"])
    assert result.exit_code == 0, result.output
    assert "cresnet51-d" in result.output and "segmentation" in result.output
    assert "cresnet39 " not in result.output and "cresnet39-dual" not in result.output


def test_a_classifier_on_a_segmentation_store_is_refused_in_one_line(seg_store_path, tmp_path):
    args = ["train", str(seg_store_path), "--out", str(tmp_path / "r"), "--model", "cresnet39"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert "cresnet39" in result.output and "segmentation" in result.output
    assert "Traceback" not in result.output

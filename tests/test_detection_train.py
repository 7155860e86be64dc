"""A detection store of real photos with boxes encodes, trains a few steps and evaluates in
both layouts through the CLI: the default model is the task's detector, --list-models shows
the detectors, eval --json gives COCO mAP, AP50, AP75 and per-class AP; the VOC-XML fixture
trains as well."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from detection_fixtures import CATEGORIES, write_coco_tree, write_voc_tree

from latentcache.cli.main import cli
from latentcache.datasets import build_index

torch.set_num_threads(1)

SMALL = ["--epochs", "1", "--batch-size", "2", "--model-opt", "base_width=4", "--crop", "0"]


def _encode(dataset: str, root, out, codec):
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    index = build_index(dataset, root)
    config = EncodeConfig(
        dataset=index.name, out=str(out), shard_size=2, workers=0, formats=("zarr", "webdataset")
    )
    run_encode(config, codec, index=index)
    return out


@pytest.fixture(scope="module")
def coco_store(tmp_path_factory, tiny_codec):
    root = tmp_path_factory.mktemp("dettrain")
    return _encode("coco", write_coco_tree(root / "data"), root / "store", tiny_codec)


@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_train_then_eval_json(coco_store, tmp_path, fmt):
    out = tmp_path / f"run-{fmt}"
    runner = CliRunner()
    args = ["train", str(coco_store), "--out", str(out), "--format", fmt, *SMALL]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "fasterrcnn-cresnet51"  # the detection task's default
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"eval_map", "eval_map_50", "train_loss"} <= set(record)
    assert record["train_loss"] > 0
    result = runner.invoke(cli, ["eval", str(out), str(coco_store), "--split", "train", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["task"] == "detection" and got["split"] == "train"
    assert {"map", "map_50", "map_75", "per_class_ap"} <= set(got)
    assert -1.0 <= got["map"] <= 1.0
    assert set(got["per_class_ap"]) == {c["name"] for c in CATEGORIES}
    assert (out / "eval_train.json").is_file()
    # COCO's adapter names the split "validate"; "val" (VOC's name) finds it
    result = runner.invoke(cli, ["eval", str(out), str(coco_store), "--split", "val"])
    assert result.exit_code == 0, result.output
    assert "on val: mAP" in result.output and "n=1" in result.output
    assert "cup" in result.output  # the per-class AP lines


def test_list_models_shows_the_detectors(coco_store):
    result = CliRunner().invoke(cli, ["train", str(coco_store), "--list-models"])
    assert result.exit_code == 0, result.output
    assert "fasterrcnn-cresnet51" in result.output and "detection" in result.output
    assert "cresnet51-d" not in result.output and "cresnet39-dual" not in result.output


def test_a_classifier_on_a_detection_store_is_refused_in_one_line(coco_store, tmp_path):
    args = ["train", str(coco_store), "--out", str(tmp_path / "r"), "--model", "cresnet39"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert "cresnet39" in result.output and "detection" in result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def voc_store(tmp_path_factory, tiny_codec):
    root = tmp_path_factory.mktemp("voctrain")
    return _encode("voc-det", write_voc_tree(root / "voc"), root / "store", tiny_codec)


@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_voc_xml_store_trains_with_random_crops_and_evaluates(voc_store, tmp_path, fmt):
    out = tmp_path / "run"
    args = ["train", str(voc_store), "--out", str(out), "--epochs", "1", "--batch-size", "2"]
    args += ["--model", "fasterrcnn-cresnet39", "--model-opt", "base_width=4", "--crop", "4"]
    result = CliRunner().invoke(cli, [*args, "--format", fmt])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["train_loss"] > 0 and "eval_map" in record
    result = CliRunner().invoke(
        cli, ["eval", str(out), str(voc_store), "--split", "test", "--json"]
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["task"] == "detection" and got["count"] >= 1 and -1.0 <= got["map_50"] <= 1.0

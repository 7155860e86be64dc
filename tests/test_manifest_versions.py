"""Manifest schema versions: v2 written (task, inputs, each shard's encoder record), v1 stores
still read as classification stores of y_hat and scales_hat, v2 without its keys refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from latentcache.cli.main import cli
from latentcache.errors import StoreCorruptError
from latentcache.store import open_store
from latentcache.store.manifest import MANIFEST_VERSION, parse_manifest
from latentcache.store.verify import verify_store


def _copy(texture_store, tmp_path: Path, change) -> Path:
    dst = tmp_path / "store"
    shutil.copytree(texture_store.path, dst, ignore=shutil.ignore_patterns(".latentcache"))
    m = json.loads((dst / "manifest.json").read_text())
    change(m)
    (dst / "manifest.json").write_text(json.dumps(m, sort_keys=True, indent=1) + "\n")
    return dst


def _downgrade_to_v1(m: dict) -> None:
    """What a version 1 writer wrote: no task, no inputs, no encoder in the shard entries."""
    m.update(version=1)
    del m["task"], m["inputs"]
    for sh in m["shards"]:
        del sh["encoder"]


def test_writers_write_v2_with_task_inputs_and_each_shards_encoder(texture_store) -> None:
    m = texture_store.manifest
    assert MANIFEST_VERSION == 2 and m["version"] == 2
    assert texture_store.task == {"name": "classification"}
    assert texture_store.inputs == ["y_hat", "scales_hat"]
    records = sorted((texture_store.path / ".latentcache").rglob("*.json"))
    encoders = {json.dumps(r.get("encoder"), sort_keys=True) for r in map(_json, records)} - {
        "null"
    }
    assert len(m["shards"]) == 5 and encoders == {
        json.dumps(sh["encoder"], sort_keys=True) for sh in m["shards"]
    }


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_v1_store_still_reads_as_classification_of_y_hat_and_scales_hat(
    texture_store, tmp_path
) -> None:
    src = _copy(texture_store, tmp_path, _downgrade_to_v1)
    store = open_store(src)
    assert store.manifest["version"] == 1
    assert store.task == {"name": "classification"} and store.inputs == ["y_hat", "scales_hat"]
    got, want = store.zarr_split("train").read(0, 4), texture_store.zarr_split("train").read(0, 4)
    np.testing.assert_array_equal(got["y_hat"], want["y_hat"])
    assert verify_store(store).ok
    card = CliRunner().invoke(cli, ["inspect", str(src)])
    assert card.exit_code == 0, card.output
    assert "task         classification; inputs y_hat, scales_hat (manifest v1)" in card.output


@pytest.mark.parametrize(
    "change, where",
    [
        (lambda m: m.pop("task"), "at (top level): must contain ['task'"),
        (lambda m: m.pop("inputs"), "at (top level): must contain ['inputs'"),
        (lambda m: m["shards"][2].pop("encoder"), "at shards/2: must contain ['encoder'"),
        (lambda m: m.update(inputs=["y_hat", "x"]), "at inputs/1: must be one of"),
        (
            lambda m: m.update(task={"name": "segmentation"}),
            "at task: must contain ['ignore_index'",
        ),
    ],
    ids=["no-task", "no-inputs", "no-encoder", "unknown-input", "segmentation-no-ignore-index"],
)
def test_v2_without_its_keys_is_refused_in_one_line(texture_store, change, where) -> None:
    m = json.loads(texture_store.manifest_bytes)
    change(m)
    with pytest.raises(
        StoreCorruptError, match=r"^m.json: does not match manifest schema v2 "
    ) as e:
        parse_manifest(json.dumps(m).encode(), "m.json")
    assert where in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_v1_manifest_is_checked_against_the_v1_schema(texture_store) -> None:
    m = json.loads(texture_store.manifest_bytes)
    _downgrade_to_v1(m)
    m["shards"][0]["files"]["zarr"][0]["path"] = "../x"
    with pytest.raises(StoreCorruptError, match="does not match manifest schema v1 at shards/0"):
        parse_manifest(json.dumps(m).encode(), "m.json")

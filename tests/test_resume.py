"""Resume after kill -9, one encoder per output, and the Dask LocalCluster path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_texture_folder

from latentcache.cli.main import cli
from latentcache.config import EncodeConfig
from latentcache.pipeline.encode import run_encode
from latentcache.store import open_store
from latentcache.store.writer import StoreWriter


def _encode_cmd(root: Path, out: Path, checkpoint: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "latentcache",
        "encode",
        "-d",
        "imagefolder",
        "--data-root",
        str(root),
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(out),
        "--shard-size",
        "2",
        "--workers",
        "0",
        "--format",
        "both",
    ]


def test_resume_after_kill_9_stores_every_key_once(tmp_path, tiny_checkpoint):
    root = write_texture_folder(tmp_path / "data", per_class=8, size=160)
    out = tmp_path / "store"
    proc = subprocess.Popen(
        _encode_cmd(root, out, tiny_checkpoint),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    commits = out / ".latentcache" / "commits"
    deadline = time.monotonic() + 120
    while not (commits.is_dir() and len(list(commits.glob("*.json"))) >= 2):
        assert proc.poll() is None, "encoder ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in commits.glob("*.json")}
    assert 2 <= len(before) < 12

    done = subprocess.run(
        _encode_cmd(root, out, tiny_checkpoint), capture_output=True, text=True, check=True
    )
    assert "resumed" in done.stdout
    for name, mtime in before.items():  # finished shards were not redone
        assert (commits / name).stat().st_mtime_ns == mtime
    store = open_store(out)
    keys = [s["key"] for s in store.zarr_split("train")]
    assert len(keys) == len(set(keys)) == store.manifest["totals"]["stored"] == 24
    wds_keys = [k for t in store.wds_shards("train") for k in _tar_keys(t)]
    assert sorted(wds_keys) == sorted(keys)
    assert CliRunner().invoke(cli, ["verify", str(out)]).exit_code == 0


def _tar_digests(store):
    return [
        (sh["split"], sh["index"], sh["count"], sh["files"]["webdataset"][0]["sha256"])
        for sh in store.manifest["shards"]
    ]


def _tar_keys(path):
    import tarfile

    with tarfile.open(path) as tf:
        return sorted({m.name.split(".")[0] for m in tf})


def test_second_encoder_on_one_output_refuses(tmp_path, texture_root, tiny_checkpoint):
    out = tmp_path / "store"
    out.mkdir()
    with StoreWriter(out, {"plan": "held by another encoder"}):
        res = CliRunner().invoke(
            cli,
            [
                "encode",
                "-d",
                "imagefolder",
                "--data-root",
                str(texture_root),
                "--checkpoint",
                str(tiny_checkpoint),
                "--out",
                str(out),
                "--workers",
                "0",
            ],
        )
    assert res.exit_code != 0 and "another encoder is writing" in res.output


def test_resume_with_other_settings_refuses(tmp_path, texture_root, tiny_codec):
    out = tmp_path / "store"
    with StoreWriter(out, {"settings_sha256": "something else"}):
        pass  # an unfinished store of other settings
    with pytest.raises(Exception, match="other settings"):
        run_encode(
            EncodeConfig(
                dataset="imagefolder", data_root=str(texture_root), out=str(out), workers=0
            ),
            tiny_codec,
        )


def test_dask_local_cluster_gives_the_same_store(tmp_path, texture_root, tiny_codec, texture_store):
    out = tmp_path / "dask"
    config = EncodeConfig(
        dataset="imagefolder", data_root=str(texture_root), out=str(out), shard_size=4, workers=2
    )
    run_encode(config, tiny_codec)
    a, b = open_store(out), texture_store
    for split in ("train", "test"):
        x, y = (
            a.zarr_split(split).read(0, 100, bitstreams=True),
            b.zarr_split(split).read(0, 100, bitstreams=True),
        )
        for name in ("key", "y_hat", "scales_hat", "bpp", "y_string", "z_string"):
            assert np.array_equal(x[name], y[name]), name
    assert _tar_digests(a) == _tar_digests(b)  # byte-identical tars whichever process wrote them
    assert json.loads((out / "manifest.json").read_text())["totals"]["stored"] == 18
    assert os.listdir(out / ".latentcache" / "commits")


def test_overwrite_never_empties_a_folder_that_is_not_a_store(tmp_path, texture_root, tiny_codec):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    config = EncodeConfig(
        dataset="imagefolder", data_root=str(texture_root), out=str(out), workers=0, overwrite=True
    )
    with pytest.raises(Exception, match="not a latentcache store"):
        run_encode(config, tiny_codec)
    assert (out / "thesis.tex").read_text() == "years of work"

"""The training loop on real stores: files of a run, resume continuing the same run, the
codec-mismatch refusal, a 2-process CPU DDP run under torchrun, and a short training on
textures encoded by a real (tiny) codec that beats chance by a wide margin."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latentcache.errors import CodecMismatchError, ConfigError
from latentcache.train import TrainConfig, evaluate_run, run_training
from latentcache.train.checkpoint import load_checkpoint
from latentcache.train.loop import choose_splits

torch.set_num_threads(1)  # 2 shared cores: more OpenMP threads only spin

REPO = Path(__file__).resolve().parents[1]


def _config(store, out, **kw) -> TrainConfig:
    base = dict(
        store=str(store.path),
        out=str(out),
        model="cresnet39",
        model_kwargs={"base_width": 4},
        epochs=2,
        batch_size=4,
        lr=0.02,
        resize=8,
        crop=6,
        progress=False,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def finished_run(texture_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    return run_training(_config(texture_store, out)), out


def test_a_run_writes_config_metrics_checkpoints_and_plots(finished_run, texture_store) -> None:
    result, out = finished_run
    for name in (
        "config.json",
        "metrics.jsonl",
        "last.pt",
        "best.pt",
        "curves.png",
        "eval_test.json",
        "confusion_test.png",
    ):
        assert (out / name).is_file(), name
    config = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert config == _config(texture_store, out)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert {"train_loss", "train_samples_per_s", "eval_top1", "eval_top5", "lr"} <= set(lines[0])
    state = load_checkpoint(out / "last.pt")  # weights_only=True
    assert state["classes"] == texture_store.classes and state["epoch"] == 2
    assert state["codec"]["weights_sha256"] == texture_store.codec["weights_sha256"]
    assert {"optimizer", "scheduler", "stats", "config"} <= set(state)
    report = json.loads((out / "eval_test.json").read_text())
    assert 0 <= report["top1"] <= report["top5"] <= 1
    assert result["epochs"] == 2


def test_resume_continues_the_same_run(texture_store, tmp_path) -> None:
    straight = run_training(_config(texture_store, tmp_path / "straight", epochs=3))
    run_training(_config(texture_store, tmp_path / "split", epochs=1))
    resumed = run_training(_config(texture_store, tmp_path / "split", epochs=3, resume=True))
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("straight", "split"))
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["scheduler"] == b["scheduler"] and a["epoch"] == b["epoch"] == 3
    keys = ("epoch", "lr", "train_loss", "eval_top1")
    lines = {
        d: [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        for d in ("straight", "split")
    }
    assert [[r[k] for k in keys] for r in lines["straight"]] == [
        [r[k] for k in keys] for r in lines["split"]
    ]
    assert resumed["train_loss"] == straight["train_loss"]


def test_an_existing_run_is_not_overwritten_without_resume(finished_run, texture_store) -> None:
    _, out = finished_run
    with pytest.raises(ConfigError, match="pass --resume"):
        run_training(_config(texture_store, out))


def _foreign_store(store, tmp_path: Path) -> Path:
    """The same samples, recorded as made by another codec (quality 5, other weights)."""
    copy = tmp_path / "foreign"
    shutil.copytree(store.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["codec"] |= {"quality": 5, "weights_sha256": "f" * 64}
    (copy / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    return copy


def test_a_checkpoint_refuses_a_store_of_another_codec(
    finished_run, texture_store, tmp_path
) -> None:
    _, out = finished_run
    foreign = _foreign_store(texture_store, tmp_path)
    with pytest.raises(CodecMismatchError) as info:
        evaluate_run(out, foreign, "test")
    message = str(info.value)
    assert "quality=1" in message and "quality=5" in message
    assert texture_store.codec["weights_sha256"][:12] in message and "ffffffffffff" in message
    resumed_elsewhere = _config(texture_store, out, resume=True, epochs=3).replace(
        store=str(foreign)
    )
    with pytest.raises(CodecMismatchError):
        run_training(resumed_elsewhere)


def test_evaluation_is_deterministic_and_complete(finished_run, texture_store) -> None:
    _, out = finished_run
    a = evaluate_run(out, texture_store.path, "test", checkpoint="last", write=False)
    b = evaluate_run(
        out, texture_store.path, "test", checkpoint="last", fmt="webdataset", write=False
    )
    assert a["top1"] == b["top1"] and a["confusion"] == b["confusion"]
    assert a["count"] == texture_store.split_info("test")["stored"]
    assert sum(map(sum, a["confusion"])) == a["count"]
    assert set(a["per_class"]) == set(texture_store.classes)


@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_train_and_eval_with_two_worker_processes(texture_store, tmp_path, fmt) -> None:
    """Training's per-epoch evaluation and ``eval`` both run with spawned workers."""
    out = tmp_path / fmt
    result = run_training(_config(texture_store, out, epochs=1, workers=2, format=fmt))
    line = json.loads((out / "metrics.jsonl").read_text())
    assert line["train_samples"] == math.ceil(12 / 4) * 4 and "eval_top1" in line
    again = evaluate_run(out, texture_store.path, "test", checkpoint="last", workers=2, write=False)
    serial = evaluate_run(out, texture_store.path, "test", checkpoint="last", write=False)
    assert again["count"] == serial["count"] == texture_store.split_info("test")["stored"]
    assert again["confusion"] == serial["confusion"] and result["epochs"] == 1


def test_split_choice_and_bad_options(texture_store, tmp_path) -> None:
    assert choose_splits(["test", "train"], None, None) == ("train", "test")
    assert choose_splits(["train", "validate", "test"], None, None) == ("train", "validate")
    assert choose_splits(["a", "b"], None, None) == ("a", None)
    with pytest.raises(ConfigError, match=r"Split \"valid\" is not in the store"):
        choose_splits(["train", "test"], None, "valid")
    with pytest.raises(ConfigError, match="takes \\['image'\\]"):
        run_training(
            _config(
                texture_store,
                tmp_path / "pix",
                model="resnet50",
                model_kwargs={"pretrained": False},
            )
        )
    with pytest.raises(ConfigError, match="Unknown classifier"):
        run_training(_config(texture_store, tmp_path / "nope", model="nope"))
    with pytest.raises(ConfigError, match='Invalid optimizer "adam"'):
        _config(texture_store, tmp_path, optimizer="adam")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_cpu_ddp_run_trains(texture_store, tmp_path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
        "-m", "latentcache", "train", str(texture_store.path), "--out", str(out), "--epochs", "2",
        "--batch-size", "4", "--model-opt", "base_width=4", "--resize", "8", "--crop", "6", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    steps = math.ceil(math.ceil(12 / 2) / 4)  # batches per rank: 12 rows, 2 ranks, 4 per batch
    assert lines[0]["train_samples"] == 2 * steps * 4  # summed over both ranks
    assert "rank 0 of 2 (gloo)" in done.stderr or "DDP" in done.stderr
    assert done.stdout.count("top-1") == 1  # only rank 0 prints


# ------------------------------------------------- a real, short training beats chance


@pytest.fixture(scope="module")
def texture_store_90(tmp_path_factory, tiny_codec):
    """135 crops (45 per class) of brick, grass, gravel at 128 px: 90 train, 45 test."""
    from conftest import write_texture_folder

    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode
    from latentcache.store import open_store

    root = write_texture_folder(
        tmp_path_factory.mktemp("tex90"), per_class=45, size=128, layout="split"
    )
    out = tmp_path_factory.mktemp("stores") / "textures-90"
    run_encode(
        EncodeConfig(
            dataset="imagefolder", data_root=str(root), out=str(out), shard_size=16, workers=0
        ),
        tiny_codec,
    )
    return open_store(out)


def test_short_training_beats_chance_by_a_wide_margin(texture_store_90, tmp_path) -> None:
    store = texture_store_90
    config = TrainConfig(
        store=str(store.path), out=str(tmp_path / "run"), model="cresnet39", model_kwargs={"base_width": 8},
        epochs=8, batch_size=8, optimizer="adamw", lr=3e-3, weight_decay=0.05, resize=10, crop=8, progress=False,
    )  # fmt: skip
    run_training(config)
    result = evaluate_run(config.out, store.path, "test", checkpoint="last")
    chance = 1 / len(store.classes)
    assert result["count"] == 45
    assert result["top1"] >= chance + 0.3, result["per_class"]


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_training_on_cuda_with_worker_processes_and_amp(texture_store, tmp_path, fmt) -> None:
    """Batches in the stored dtypes reach the GPU (pinned), where the scale index is looked up,
    normalised and cropped; AMP on. Needs CUDA (never required)."""
    import torch
    from click.testing import CliRunner

    from latentcache.cli.main import cli
    from latentcache.train.data import split_count

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = tmp_path / "run"
    args = ["train", str(texture_store.path), "--format", fmt, "--device", "cuda", "--amp"]
    args += ["--workers", "2", "--epochs", "2", "--batch-size", "8", "--resize", "8"]
    args += ["--crop", "6", "--model-opt", "base_width=8", "--out", str(out)]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    scored = CliRunner().invoke(
        cli, ["eval", str(out), str(texture_store.path), "--device", "cuda", "--json"]
    )
    assert scored.exit_code == 0, scored.output
    result = json.loads(scored.stdout)
    assert result["count"] == split_count(texture_store.split_info("test"))
    assert 0.0 <= result["top1"] <= 1.0

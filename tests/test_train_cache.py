"""The training input path: splits held in memory (--cache host | device) against the
streaming loader, the refusal when a cache does not fit, the device feeder, the batched
crop/flip against a per-sample reference, compilation, fused optimizers; CUDA parts marked gpu."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentcache.errors import ConfigError
from latentcache.train import TrainConfig, run_training
from latentcache.train.augment import (
    AugmentConfig,
    LatentStats,
    LatentTransform,
    apply_crop_flip,
    crop_flip_params,
)
from latentcache.train.cache import CachedBatches, cache_loader, sample_bytes
from latentcache.train.data import StreamSpec, batches_per_rank, build_loader
from latentcache.train.distributed import DistInfo
from latentcache.train.feed import RING_SIZE, DeviceFeeder
from latentcache.train.loop import Trainer

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
FIELDS = ("y_hat", "scales_hat")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _spec(store, fmt="zarr", **kw) -> StreamSpec:
    base = dict(store=str(store.path), split="train", fmt=fmt, fields=FIELDS, batch_size=4)
    return StreamSpec(**{**base, **kw})


def _config(store, out, **kw) -> TrainConfig:
    base = dict(
        store=str(store.path), out=str(out), model="cresnet39", model_kwargs={"base_width": 4},
        epochs=1, batch_size=4, lr=0.02, resize=8, crop=6, progress=False, device="cpu",
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _rows(batches) -> dict[str, dict]:
    """key -> that sample's tensors, over all batches."""
    out = {}
    for b in batches:
        for i, key in enumerate(b["key"]):
            out[key] = {f: b[f][i].clone() for f in (*FIELDS, "label")}
    return out


# ------------------------------------------------------------- the cache


@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_host_cache_holds_what_the_streaming_loader_yields(texture_store, fmt) -> None:
    spec = _spec(texture_store, fmt)
    cached = cache_loader(spec, "host", CPU)
    streamed = list(build_loader(spec))  # evaluation mode: every sample once, in order
    got = list(cached)
    assert [b["key"] for b in got] == [b["key"] for b in streamed]
    for a, b in zip(got, streamed, strict=True):
        for f in (*FIELDS, "label"):
            assert a[f].dtype == b[f].dtype and torch.equal(a[f], b[f]), f
    assert got[0]["y_hat"].dtype == torch.int16 and got[0]["scales_hat"].dtype == torch.uint8
    assert cached.cache.nbytes == len(cached.cache) * sample_bytes(texture_store, "train", FIELDS)


def test_cached_epochs_are_seeded_whole_batches_over_every_sample(texture_store) -> None:
    count = len(_rows(build_loader(_spec(texture_store))))
    steps = batches_per_rank(count, 1, 4)
    loader = cache_loader(_spec(texture_store, seed=3), "device", CPU, steps=steps)
    loader.set_epoch(0)
    first = list(loader)
    assert len(first) == steps and all(len(b["key"]) == 4 for b in first)
    assert len({k for b in first for k in b["key"]}) == count  # every sample at least once
    loader.dataset.set_epoch(0)
    again = [b["key"] for b in loader]
    loader.set_epoch(1)
    other = [b["key"] for b in loader]
    assert again == [b["key"] for b in first]  # same seed and epoch: the same batches
    assert other != again
    # a sample's tensors are the streamed ones, whichever batch it lands in
    ref = _rows(build_loader(_spec(texture_store)))
    for key, row in _rows(first).items():
        for f, t in row.items():
            assert torch.equal(t, ref[key][f]), (key, f)


def test_ranks_cache_disjoint_shares_and_run_the_same_number_of_batches(texture_store) -> None:
    count = len(_rows(build_loader(_spec(texture_store))))
    steps = batches_per_rank(count, 2, 4)
    shares = [
        cache_loader(_spec(texture_store, rank=r, world_size=2), "host", CPU, steps=steps)
        for r in (0, 1)
    ]
    keys = [set(s.cache.keys) for s in shares]
    assert not keys[0] & keys[1] and len(keys[0] | keys[1]) == count
    assert [len(list(s)) for s in shares] == [steps, steps]


def test_a_cache_that_does_not_fit_is_refused_in_one_line(texture_store) -> None:
    need = sample_bytes(texture_store, "train", FIELDS)
    with pytest.raises(ConfigError) as info:
        cache_loader(_spec(texture_store), "device", CPU, free=need)  # one sample's worth
    message = str(info.value)
    assert "\n" not in message and "--cache device" in message and "GiB" in message


def test_a_split_of_mixed_latent_sizes_is_refused_before_reading(
    tmp_path, photo_images, tiny_codec
) -> None:
    from PIL import Image

    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode
    from latentcache.store import open_store

    for cls, rgb in zip(("a", "b", "c"), photo_images, strict=True):  # three sizes
        (tmp_path / "img" / cls).mkdir(parents=True)
        Image.fromarray(rgb).save(tmp_path / "img" / cls / "x.png")
    out = tmp_path / "store"
    run_encode(
        EncodeConfig(
            dataset="imagefolder", data_root=str(tmp_path / "img"), out=str(out), workers=0
        ),
        tiny_codec,
    )
    store = open_store(out)
    with pytest.raises(ConfigError, match="mixes latent sizes"):
        cache_loader(_spec(store, split=next(iter(store.splits))), "host", CPU)


def test_eval_metrics_from_the_cache_equal_the_streaming_ones(texture_store, tmp_path) -> None:
    stream = Trainer(_config(texture_store, tmp_path / "a"), CPU, DistInfo())
    cached = Trainer(_config(texture_store, tmp_path / "b", cache="host"), CPU, DistInfo())
    cached.model.load_state_dict(stream.model.state_dict())
    split = stream.data.eval_split
    loader = cached.loader(split, train=False)[0]
    assert isinstance(loader, CachedBatches)
    a = stream.evaluate(stream.loader(split, train=False)[0]).summary()
    assert a == cached.evaluate(loader).summary() and a["count"] > 0


def test_cli_trains_with_the_cache_in_device_memory(texture_store, tmp_path) -> None:
    from click.testing import CliRunner

    from latentcache.cli.main import cli

    out = tmp_path / "run"
    args = ["train", str(texture_store.path), "--cache", "device", "--device", "cpu"]
    args += ["--epochs", "2", "--batch-size", "4", "--resize", "8", "--crop", "6"]
    args += ["--model-opt", "base_width=4", "--out", str(out)]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert json.loads((out / "config.json").read_text())["cache"] == "device"
    bad = CliRunner().invoke(cli, [*args[:2], "--cache", "disk"])
    assert bad.exit_code != 0 and "disk" in bad.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_run_trains_from_the_host_cache(texture_store, tmp_path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
        "-m", "latentcache", "train", str(texture_store.path), "--out", str(out), "--epochs", "1",
        "--batch-size", "4", "--model-opt", "base_width=4", "--resize", "8", "--crop", "6", "--device", "cpu",
        "--cache", "host",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = math.ceil(math.ceil(12 / 2) / 4)  # 12 train rows, 2 ranks, 4 per batch
    assert line["train_samples"] == 2 * steps * 4  # summed over both ranks
    assert "eval_top1" in line


# ------------------------------------------------------------- the device-side augmentation


def _reference_crop_flip(x, top, left, flipped, size) -> torch.Tensor:
    """One sample at a time: slice, then mirror (what a per-sample CPU transform does)."""
    out = []
    for i in range(len(x)):
        t, le = int(top[i]), int(left[i])
        crop = x[i, :, t : t + size, le : le + size]
        out.append(crop.flip(-1) if bool(flipped[i]) else crop)
    return torch.stack(out)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_batched_crop_flip_equals_the_per_sample_reference(fmt) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 10, 9, generator=gen)
    params = crop_flip_params(6, 10, 9, 7, True, gen)
    got = apply_crop_flip(x, *params, 7, fmt)
    assert torch.equal(got, _reference_crop_flip(x, *params, 7))
    assert got.is_contiguous(memory_format=fmt)


def _transform(fmt=torch.contiguous_format) -> LatentTransform:
    stats = LatentStats(y_hat_mean=0.5, y_hat_std=3.0, log_scales_mean=-0.2, log_scales_std=1.5)
    return LatentTransform(FIELDS, stats, AugmentConfig(resize=8, crop=6), fmt)


def test_transform_in_channels_last_equals_the_contiguous_one(texture_store) -> None:
    batch = next(iter(build_loader(_spec(texture_store))))
    a = _transform()(batch, True, torch.Generator().manual_seed(1))
    b = _transform(torch.channels_last)(batch, True, torch.Generator().manual_seed(1))
    for x, y in zip(a, b, strict=True):
        assert y.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(x, y)


# ------------------------------------------------------------- feeder, compile, optimizer


def test_the_feeder_on_the_cpu_passes_batches_through(texture_store) -> None:
    batches = list(build_loader(_spec(texture_store)))
    for b in batches:
        b["mask"] = (b["y_hat"][:, 0] > 0).to(torch.uint8)
    fed = list(DeviceFeeder("cpu")(iter(batches)))
    assert len(fed) == len(batches)
    for a, b in zip(fed, batches, strict=True):
        assert a["key"] == b["key"]
        assert all(torch.equal(a[f], b[f]) for f in (*FIELDS, "label", "mask"))


@pytest.mark.slow
def test_compiled_training_runs_on_the_cpu(texture_store, tmp_path) -> None:
    """torch.compile (inductor, a C++ compiler) of a tiny model: about 30 s to compile."""
    config = _config(texture_store, tmp_path / "run", compile_mode="default", max_batches=2)
    result = run_training(config)
    assert result["epochs"] == 1 and np.isfinite(result["train_loss"])
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert not any(k.startswith("_orig_mod") for k in state["model"])


def test_fused_optimizer_only_on_cuda(texture_store, tmp_path) -> None:
    from latentcache.train.schedule import build_optimizer

    model = torch.nn.Linear(3, 2)
    for name in ("sgd", "adamw"):
        opt = build_optimizer(_config(texture_store, tmp_path, optimizer=name), model)
        assert not opt.param_groups[0]["fused"]


# ------------------------------------------------------------- CUDA (never required)


@pytest.mark.gpu
@needs_cuda
def test_feeder_copies_on_a_stream_into_reused_pinned_buffers(texture_store) -> None:
    batches = list(build_loader(_spec(texture_store)))
    for b in batches:  # a target of another task rides along, whatever its name
        b["mask"] = (b["y_hat"][:, 0] > 0).to(torch.uint8)
    feeder = DeviceFeeder("cuda")
    fed = []
    for b in feeder(iter(batches)):
        fed.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in b.items()})
    for a, b in zip(fed, batches, strict=True):
        assert a["y_hat"].is_cuda and a["y_hat"].dtype == torch.int16
        assert a["scales_hat"].dtype == torch.uint8
        assert all(torch.equal(a[f].cpu(), b[f]) for f in (*FIELDS, "label", "mask"))
        assert a["key"] == b["key"]
    pinned = [s["y_hat"] for s in feeder.ring.slots if "y_hat" in s]
    assert len(pinned) == min(RING_SIZE, len(batches)) and all(p.is_pinned() for p in pinned)


@pytest.mark.gpu
@needs_cuda
def test_device_augmentation_equals_the_cpu_one(texture_store) -> None:
    batch = next(iter(build_loader(_spec(texture_store))))
    cuda = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    for train in (True, False):
        a = _transform()(batch, train, torch.Generator().manual_seed(2))
        b = _transform(torch.channels_last)(cuda, train, torch.Generator().manual_seed(2))
        for x, y in zip(a, b, strict=True):
            assert y.is_cuda and y.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(x, y.cpu(), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@needs_cuda
def test_cuda_run_from_the_device_cache_with_graphs_and_a_fused_optimizer(
    texture_store, tmp_path
) -> None:
    from latentcache.train.schedule import build_optimizer

    config = _config(
        texture_store, tmp_path / "run", device="cuda", cache="device", epochs=2,
        compile_mode="reduce-overhead",
    )  # fmt: skip
    trainer = Trainer(config, torch.device("cuda"), DistInfo())
    loader, steps = trainer.loader(trainer.data.train_split, train=True)
    assert next(iter(loader))["y_hat"].is_cuda  # the cache lives on the GPU
    assert build_optimizer(config, trainer.model).param_groups[0]["fused"]
    result = trainer.fit()
    assert result["epochs"] == 2 and np.isfinite(result["train_loss"])

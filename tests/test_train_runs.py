"""What a run records and starts from: presets against their documentation, ImageNet /
random / another run's weights (``--pretrained``, ``--init``), ``--list-models``, the pixel
baseline refused on latents, per-rank augmentation under DDP, float32 stores."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from latentcache.cli.main import cli
from latentcache.config import EncodeConfig
from latentcache.errors import ConfigError
from latentcache.pipeline.encode import run_encode
from latentcache.store.manifest import file_sha256
from latentcache.train import TrainConfig, run_training
from latentcache.train.checkpoint import load_checkpoint
from latentcache.train.init import HEAD_PREFIX
from latentcache.train.loop import build_model, open_run_data
from latentcache.train.models import create_classifier
from latentcache.train.models.listing import count_parameters
from latentcache.train.presets import PRESETS, list_presets

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(model_kwargs={"base_width": 4}, epochs=1, batch_size=4, resize=8, crop=6)
SMALL_CLI = [
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--resize",
    "8",
    "--crop",
    "6",
    "--device",
    "cpu",
]


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path, monkeypatch):
    """No ImageNet weights cached, whatever this machine's torch hub cache holds."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def _config(store, out, **kw) -> TrainConfig:
    return TrainConfig(store=str(store.path), out=str(out), progress=False, **{**SMALL, **kw})


# ------------------------------------------------------------------------------ presets


def _documented_presets() -> dict[str, dict]:
    """docs/presets.md: per ``## name`` section, the ``| `key` | `json` |`` rows."""
    out: dict[str, dict] = {}
    name = None
    for line in (REPO / "docs" / "presets.md").read_text().splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
        row = re.fullmatch(r"\| `(\w+)` \| `(.+)` \|", line.strip())
        if row and name:
            out.setdefault(name, {})[row[1]] = json.loads(row[2])
    return out


def test_every_preset_resolves_to_its_documented_settings(texture_store) -> None:
    documented = _documented_presets()
    expected = ["codevilla2021-det", "gupta2024", "torfason2018", "torfason2018-seg"]
    assert sorted(documented) == list_presets() == expected
    for name, settings in documented.items():
        config = TrainConfig.from_options({"store": "s", "out": "o"}, name).to_dict()
        assert config["preset"] == name
        for key, value in settings.items():
            assert config[key] == value, f"{name}: {key} is {config[key]!r}, documented {value!r}"
        assert set(settings) == set(PRESETS[name].settings)  # nothing undocumented


def test_explicit_options_override_a_preset() -> None:
    base = {"store": "s", "out": "o"}
    cfg = TrainConfig.from_options(
        {**base, "epochs": 3, "model_kwargs": {"stem_width": 32}}, "gupta2024"
    )
    assert cfg.epochs == 3 and cfg.lr == 0.01 and cfg.schedule == "step"
    assert cfg.model_kwargs == {"stem_width": 32, "layer2_stride": 2}
    adamw = TrainConfig.from_options({**base, "optimizer": "adamw"}, "torfason2018")
    assert (adamw.lr, adamw.weight_decay, adamw.epochs) == (1e-3, 0.05, 28)
    other = TrainConfig.from_options({**base, "model": "cresnet39"}, "gupta2024")
    assert other.model_kwargs == {} and other.batch_size == 32
    with pytest.raises(ConfigError, match="Unknown preset"):
        TrainConfig.from_options(base, "deng2021")


def test_cli_preset_choices_are_the_registry() -> None:
    from latentcache.cli.train_cmd import train

    option = next(p for p in train.params if p.name == "preset")
    assert sorted(option.type.choices) == list_presets()


def test_gupta2024_stem_choice_is_explicit() -> None:
    paper = create_classifier("cresnet39-dual", 192, 23, pretrained=False)
    code = create_classifier(
        "cresnet39-dual", 192, 23, pretrained=False, stem_width="M", layer2_stride=2
    )
    assert paper.y_stem.conv1.out_channels == 32 and code.y_stem.conv1.out_channels == 192
    assert paper.y_stem.conv3.out_channels == code.y_stem.conv3.out_channels == 128
    y = torch.randn(1, 192, 28, 28)
    assert paper.layer2(torch.cat([paper.y_stem(y)] * 2, 1)).shape[-1] == 28
    assert code.layer2(torch.cat([code.y_stem(y)] * 2, 1)).shape[-1] == 14


def test_sresnet_stem_follows_table_6_as_bottlenecks() -> None:
    stem = create_classifier("sresnet", 256, 10, pretrained=False).stem.body
    blocks = [m for m in stem if type(m).__name__ == "StemBlock"]
    shape = [(b.body[0].in_channels, b.body[0].out_channels) for b in blocks]
    assert shape == [(256, 64), (64, 16), (16, 16)]  # Block(256, 64), Block(64, 16), Block(16, 16)
    assert stem(torch.randn(2, 256, 7, 9)).shape == (2, 64, 28, 36)
    m192 = create_classifier("sresnet", 192, 10, pretrained=False).stem.body
    assert [b.body[0].in_channels for b in m192 if type(b).__name__ == "StemBlock"] == [192, 48, 12]


# ---------------------------------------------------------------- where weights come from


def test_random_weights_are_recorded_with_a_warning_and_require_refuses(
    texture_store, tmp_path, caplog
) -> None:
    out = tmp_path / "dual"
    with caplog.at_level(logging.WARNING):
        run_training(
            _config(texture_store, out, model="cresnet39-dual", model_kwargs={}, max_batches=1)
        )
    warned = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "RANDOM weights" in r.getMessage()
    ]
    assert warned, caplog.text
    record = json.loads((out / "config.json").read_text())["initialised_from"]
    assert record["kind"] == "random" and "resnet50-0676ba61.pth" in record["reason"]
    assert load_checkpoint(out / "last.pt")["initialised_from"] == record
    args = [
        "train",
        str(texture_store.path),
        "--model",
        "cresnet39-dual",
        "--pretrained",
        "require",
    ]
    refused = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "req"), *SMALL_CLI])
    assert (
        refused.exit_code == 1
        and "not cached" in refused.output
        and "Traceback" not in refused.output
    )
    assert not (tmp_path / "req").exists()
    no_trunk = CliRunner().invoke(
        cli,
        ["train", str(texture_store.path), "--pretrained", "require", "--out", str(tmp_path / "c")],
    )
    assert no_trunk.exit_code == 1 and "cresnet39 has no ImageNet weights" in no_trunk.output


def test_cached_imagenet_weights_are_recorded_by_file_and_sha256(tmp_path) -> None:
    from torchvision.models import resnet50

    cache = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    weights = cache / "resnet50-0676ba61.pth"
    torch.manual_seed(1)
    torch.save(resnet50(weights=None).state_dict(), weights)
    model = create_classifier("cresnet39-dual", 8, 3, pretrained=True)
    assert model.initialised_from == {
        "kind": "imagenet", "file": str(weights), "sha256": file_sha256(weights), "arch": "resnet50"
    }  # fmt: skip
    saved = torch.load(weights, weights_only=True)
    assert torch.equal(model.layer3[0].conv1.weight, saved["layer3.0.conv1.weight"])


def test_init_starts_from_another_run_with_a_new_head(texture_store, tmp_path) -> None:
    first = tmp_path / "first"
    run_training(_config(texture_store, first, max_batches=2))
    config = _config(texture_store, tmp_path / "second", init=str(first), seed=5)
    data = open_run_data(config)
    model, record = build_model(config, data, None)
    theirs = load_checkpoint(first / "best.pt")["model"]
    ours = model.state_dict()
    for key, value in theirs.items():
        same = torch.equal(ours[key], value)
        assert same != key.startswith(HEAD_PREFIX), key  # body copied, head fitted anew
    assert record["kind"] == "run" and record["file"] == str(first / "best.pt")
    assert record["sha256"] == file_sha256(first / "best.pt") and record["model"] == "cresnet39"
    run_training(config)
    saved = json.loads((tmp_path / "second" / "config.json").read_text())
    assert saved["init"] == str(first) and saved["initialised_from"] == record
    with pytest.raises(ConfigError, match="no such run folder"):
        build_model(config.replace(init=str(tmp_path / "nowhere")), data, None)
    with pytest.raises(ConfigError, match="does not fit"):
        wide = config.replace(model_kwargs={"base_width": 8})
        build_model(wide, data, None)


# ------------------------------------------------------------------- models for a store


def test_list_models_prints_inputs_and_parameters_for_the_store(texture_store) -> None:
    done = CliRunner().invoke(cli, ["train", "--list-models", str(texture_store.path)])
    assert done.exit_code == 0, done.output
    lines = {line.split()[0]: line for line in done.output.splitlines()[2:]}
    m, k = texture_store.num_channels, len(texture_store.classes)
    assert f"M={m} channels, {k} classes" in done.output
    assert "y_hat+scales_hat" in lines["cresnet39-dual"] and "image" in lines["resnet50"]
    assert "Not for latent training" in lines["resnet50"]
    assert f"{count_parameters('cresnet39', m, k) / 1e6:.2f}M" in lines["cresnet39"]
    other = CliRunner().invoke(
        cli, ["train", "--list-models", "--channels", "320", "--classes", "45"]
    )
    assert "M=320 channels, 45 classes" in other.output
    assert CliRunner().invoke(cli, ["train"]).exit_code == 2  # STORE needed to train


def test_resnet50_is_the_pixel_baseline_not_a_latent_model(texture_store, tmp_path) -> None:
    with pytest.raises(ConfigError, match="pixel baseline"):
        run_training(_config(texture_store, tmp_path / "r", model="resnet50", model_kwargs={}))


def test_float32_store_trains_with_the_store_floor(tmp_path, texture_root, tiny_codec) -> None:
    run_encode(
        EncodeConfig(
            dataset="imagefolder", data_root=str(texture_root), out=str(tmp_path / "f32"),
            workers=0, scales_repr="float32", formats=("zarr",),
        ),
        tiny_codec,
    )  # fmt: skip
    from latentcache.store import open_store

    store = open_store(tmp_path / "f32")
    out = tmp_path / "run"
    run_training(
        _config(store, out, model_kwargs={"base_width": 4, "inputs": ["y_hat", "scales_hat"]})
    )
    stats = load_checkpoint(out / "last.pt")["stats"]
    assert stats["scales_floor"] == pytest.approx(0.11)
    assert stats["log_scales_mean"] == store.split_info("train")["stats"]["log_scales_mean"]


# ------------------------------------------------------------------------------ DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_ranks_hold_equal_weights_and_draw_their_own_crops(texture_store, tmp_path) -> None:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", str(_free_port()), str(REPO / "tests" / "ddp_probe.py"),
        str(texture_store.path), str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["params"].keys() == r1["params"].keys()
    for key in r0["params"]:
        assert torch.equal(r0["params"][key], r1["params"][key]), key
    start = load_checkpoint(tmp_path / "run" / "last.pt")
    assert start["epoch"] == 1
    assert not torch.equal(r0["crops"], r1["crops"])  # same batch, each rank its own crops/flips

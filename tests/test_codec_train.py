"""`codec train`: a tiny real ScaleHyperprior learns, saves, resumes and entropy-codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from latentcache.codec.spec import CodecSpec
from latentcache.codec.train import LAMBDAS, TrainConfig, lambda_for, state_path_for
from latentcache.errors import ConfigError

TINY = dict(N=16, M=16, crop=64, batch_size=2, lr=1e-3, aux_lr=1e-2, log_every=1)


def _photo(seed: int, h: int = 96, w: int = 112) -> np.ndarray:
    """A smooth colour gradient with texture: learnable, not constant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 2, yy * 2, (xx + yy)], axis=-1) % 256
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    for i in range(3):
        Image.fromarray(_photo(i)).save(root / f"p{i}.png")
    return root


def _train(photos: Path, out: Path, steps: int, **kw):
    from latentcache.codec.train import list_image_files, run_codec_train

    config = TrainConfig(out=str(out), steps=steps, **{**TINY, **kw})
    return run_codec_train(config, list_image_files(photos), photos, data_source={"t": 1})


def test_lambda_table_is_compressais():
    assert LAMBDAS["mse"] == (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
    assert lambda_for("mse", 3) == 0.0067
    with pytest.raises(ConfigError, match="between"):
        lambda_for("mse", 9)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(crop=100), "multiple of 64"),
        (dict(init="imagenet"), "init"),
        (dict(init="checkpoint"), "--init-checkpoint"),
        (dict(quality=0), "quality"),
        (dict(steps=0), "steps"),
        (dict(metric="ms-ssim", crop=128), "for ms-ssim, should be >= 192"),
    ],
)
def test_config_errors_name_the_value(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(out="x.pt", **bad)


def test_config_roundtrip():
    c = TrainConfig(out="x.pt", quality=5, N=16, M=24, max_minutes=1.5)
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert c.lambda_ == 0.0250 and c.widths == (16, 24)


def test_training_reduces_loss_and_checkpoint_encodes(photos, tmp_path):
    from latentcache.codec.evaluate import codec_roundtrip, psnr
    from latentcache.codec.load import load_codec

    out = tmp_path / "codec.pt"
    result = _train(photos, out, steps=30)
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])

    codec = load_codec(CodecSpec(quality=3, source="checkpoint", checkpoint=str(out)))
    assert codec.widths == (16, 16)
    assert codec.extra["lambda"] == 0.0067 and codec.extra["steps"] == 30
    images = codec.extra["training"]["images"]
    assert [i["name"] for i in images] == ["p0.png", "p1.png", "p2.png"]
    assert all(len(i["sha256"]) == 64 for i in images)
    rgb = _photo(7)
    rec, nbytes = codec_roundtrip(codec.model, rgb)
    assert rec.shape == rgb.shape and nbytes > 0
    assert psnr(rgb, rec) > 10


def test_resume_continues_from_saved_state(photos, tmp_path):
    out = tmp_path / "codec.pt"
    first = _train(photos, out, steps=4, save_every=2)
    assert first.steps == 4 and state_path_for(out).is_file()
    second = _train(photos, out, steps=6, save_every=2)
    assert second.steps == 6
    assert [h["step"] for h in second.history] == [5, 6]  # picked up at step 4


def test_resume_refuses_another_architecture(photos, tmp_path):
    out = tmp_path / "codec.pt"
    _train(photos, out, steps=1)
    with pytest.raises(ConfigError, match="N=16"):
        _train(photos, out, steps=2, M=24, N=24)


def test_half_checkpoint_is_smaller_and_still_codes(photos, tmp_path):
    import torch

    from latentcache.codec.evaluate import codec_roundtrip
    from latentcache.codec.load import load_codec

    out = tmp_path / "half.pt"
    _train(photos, out, steps=2, half=True)
    sd = torch.load(out, weights_only=True)["state_dict"]
    assert sd["g_a.0.weight"].dtype == torch.float16
    assert sd["gaussian_conditional.scale_table"].dtype == torch.float32
    assert sd["gaussian_conditional._quantized_cdf"].dtype == torch.int32
    codec = load_codec(CodecSpec(quality=3, source="checkpoint", checkpoint=str(out)))
    rec, nbytes = codec_roundtrip(codec.model, _photo(1))
    assert nbytes > 0 and rec.dtype == np.uint8


def test_cli_train_from_folder(photos, tmp_path):
    from latentcache.cli.codec_cmd import codec

    out = tmp_path / "cli.pt"
    args = ["train", "--images", str(photos), "--N", "16", "--M", "16", "--crop", "64"]
    args += ["--batch-size", "1", "--steps", "2", "--out", str(out)]
    result = CliRunner().invoke(codec, args)
    assert result.exit_code == 0, result.output
    assert out.is_file() and "2 steps" in result.output


def test_cli_init_zoo_offline_is_one_clear_line(photos, tmp_path, monkeypatch):
    from latentcache.cli.codec_cmd import codec

    monkeypatch.setenv("LATENTCACHE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    args = ["train", "--init", "zoo", "--quality", "8", "--images", str(photos)]
    result = CliRunner().invoke(codec, [*args, "--out", str(tmp_path / "z.pt")])
    assert result.exit_code != 0
    assert "no cached weights" in result.output and "Traceback" not in result.output


def test_cli_needs_exactly_one_source(tmp_path):
    from latentcache.cli.codec_cmd import codec

    result = CliRunner().invoke(codec, ["train", "--out", str(tmp_path / "x.pt")])
    assert result.exit_code != 0 and "--images DIR or --dataset NAME" in result.output


def test_cli_train_on_a_registered_dataset(tmp_path):
    from latentcache.cli.codec_cmd import codec
    from latentcache.codec.load import load_codec

    out, root = tmp_path / "ds.pt", tmp_path / "demo"
    args = ["train", "--dataset", "demo", "--data-root", str(root), "--N", "16", "--M", "16"]
    args += ["--crop", "64", "--batch-size", "1", "--steps", "1", "--out", str(out)]
    result = CliRunner().invoke(codec, args)
    assert result.exit_code == 0, result.output
    extra = load_codec(CodecSpec(quality=3, source="checkpoint", checkpoint=str(out))).extra
    assert extra["training"]["data"]["dataset"] == "demo"
    assert len(extra["training"]["images"]) == 195  # the demo set's train split only
    assert all(i["name"].startswith("train/") for i in extra["training"]["images"])

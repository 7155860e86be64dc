"""`codec eval`: its numbers recomputed here independently from bytes and pixels."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

JPEG_QUALITIES = (10, 50, 90)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photo(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 3, yy * 2, xx + 2 * yy], axis=-1) % 256
    return np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("eval-images")
    Image.fromarray(_photo(0, 176, 200)).save(root / "big.png")  # MS-SSIM needs > 160 px
    Image.fromarray(_photo(1, 70, 90)).save(root / "small.png")  # MS-SSIM: None
    return root


@pytest.fixture(scope="module")
def tiny_codec():
    import torch
    from compressai.models import ScaleHyperprior

    from latentcache.codec.load import codec_from_model
    from latentcache.codec.spec import CodecSpec

    torch.manual_seed(0)
    model = ScaleHyperprior(16, 16)
    with torch.no_grad():
        model.g_a[-1].weight.mul_(30)  # spread y so that the bitstream is not trivial
    model.update(force=True)
    return codec_from_model(model.eval(), CodecSpec(quality=2))


def _independent(model, rgb: np.ndarray) -> tuple[float, float]:
    """bpp from the bytes of stock compress(), PSNR from the decoded 8-bit pixels."""
    import torch
    import torch.nn.functional as F

    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
    hp, wp = -(-h // 64) * 64, -(-w // 64) * 64
    top, left = (hp - h) // 2, (wp - w) // 2
    xp = F.pad(x, (left, wp - w - left, top, hp - h - top))
    with torch.no_grad():
        enc = model.compress(xp)
        x_hat = model.decompress(enc["strings"], enc["shape"])["x_hat"]
    rec = x_hat[0, :, top : top + h, left : left + w].clamp(0, 1).permute(1, 2, 0)
    rec = (rec.numpy() * 255).round()
    nbytes = len(enc["strings"][0][0]) + len(enc["strings"][1][0])
    mse = np.mean((rec - rgb.astype(np.float64)) ** 2)
    return nbytes * 8 / (h * w), 10 * math.log10(255**2 / mse)


def _run(tiny_codec, folder, out):
    from latentcache.codec.evaluate import EvalConfig, load_eval_images, run_codec_eval
    from latentcache.codec.train import list_image_files

    images = load_eval_images(list_image_files(folder), folder)
    return run_codec_eval([tiny_codec], images, EvalConfig(str(out), JPEG_QUALITIES))


def test_codec_numbers_match_an_independent_computation(tiny_codec, folder, tmp_path):
    from PIL import Image

    results = _run(tiny_codec, folder, tmp_path / "rep")
    saved = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert saved["codecs"][0]["mean"] == pytest.approx(results["codecs"][0]["mean"])
    rows = {r["name"]: r for r in saved["codecs"][0]["per_image"]}
    for name in ("big.png", "small.png"):
        rgb = np.asarray(Image.open(folder / name).convert("RGB"))
        bpp, psnr = _independent(tiny_codec.model, rgb)
        assert rows[name]["bpp"] == pytest.approx(bpp, rel=1e-12)
        assert rows[name]["psnr"] == pytest.approx(psnr, rel=1e-9)
    assert rows["small.png"]["ms_ssim"] is None
    assert 0 < rows["big.png"]["ms_ssim"] <= 1
    mean = saved["codecs"][0]["mean"]
    assert mean["bpp"] == pytest.approx(np.mean([r["bpp"] for r in rows.values()]))
    assert (tmp_path / "rep" / "rd.png").stat().st_size > 1000


def test_jpeg_reference_matches_pillow(tiny_codec, folder, tmp_path):
    from PIL import Image

    results = _run(tiny_codec, folder, tmp_path / "rep")
    assert [j["quality"] for j in results["jpeg"]] == list(JPEG_QUALITIES)
    rgb = np.asarray(Image.open(folder / "big.png").convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=50, optimize=True)
    rec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).astype(np.float64)
    row = next(r for r in results["jpeg"][1]["per_image"] if r["name"] == "big.png")
    assert row["bpp"] == pytest.approx(len(buf.getvalue()) * 8 / rgb[..., 0].size)
    psnr = 10 * math.log10(255**2 / np.mean((rec - rgb) ** 2))
    assert row["psnr"] == pytest.approx(psnr)


def test_jpeg_at_rates_interpolates_inside_the_sweep_only():
    from latentcache.codec.evaluate import jpeg_at_rates

    jpeg = {
        10: [{"bpp": 0.2, "psnr": 25.0, "ms_ssim": 0.90}],
        50: [{"bpp": 0.6, "psnr": 31.0, "ms_ssim": 0.96}],
    }
    inside = jpeg_at_rates([{"name": "a", "bpp": 0.4}], jpeg)[0]
    assert inside["psnr"] == pytest.approx(28.0) and inside["ms_ssim"] == pytest.approx(0.93)
    outside = jpeg_at_rates([{"name": "a", "bpp": 0.05}], jpeg)[0]
    assert outside["psnr"] is None


def test_cli_eval_several_checkpoints_one_curve(tiny_codec, folder, tmp_path):
    from latentcache.cli.codec_cmd import codec
    from latentcache.codec.load import save_codec_checkpoint
    from latentcache.codec.spec import CodecSpec

    ckpts = []
    for q in (1, 2):
        path = tmp_path / f"q{q}.pt"
        save_codec_checkpoint(path, tiny_codec.model, CodecSpec(quality=q), **{"lambda": 0.01})
        ckpts += ["--checkpoint", str(path)]
    out = tmp_path / "cli"
    args = ["eval", *ckpts, "--images", str(folder), "--out", str(out), "--jpeg-qualities", "20,80"]
    result = CliRunner().invoke(codec, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert [c["identity"]["quality"] for c in saved["codecs"]] == [1, 2]
    assert "JPEG q80" in result.output and (out / "rd.png").is_file()


def test_cli_eval_without_codec_is_an_error(folder, tmp_path):
    from latentcache.cli.codec_cmd import codec

    result = CliRunner().invoke(codec, ["eval", "--images", str(folder), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "no codec to evaluate" in result.output


def test_shipped_demo_codec_codes_a_held_out_photo():
    from skimage import data

    from latentcache.codec.evaluate import codec_roundtrip, psnr
    from latentcache.codec.load import DEMO_CODEC_PATH, load_codec
    from latentcache.codec.spec import CodecSpec

    assert DEMO_CODEC_PATH.stat().st_size <= 20_000_000
    demo = load_codec(CodecSpec(quality=3, source="demo"))
    assert demo.widths == (128, 192) and demo.extra["lambda"] == 0.0067
    rgb = data.chelsea()[64:192, 128:320]  # held out from its training (docs/demo-codec.md)
    rec, nbytes = codec_roundtrip(demo.model, rgb)
    assert 0.1 < nbytes * 8 / (128 * 192) < 1.5
    assert psnr(rgb, rec) > 22

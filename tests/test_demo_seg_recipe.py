"""pipelines/demo-seg.toml end to end, offline: encode, train cResNet-39-d, mIoU, report; the
pixel baselines (DeepLabV3-ResNet-50 on decoded and original images) in the slow test."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from latentcache.cli.main import cli
from latentcache.recipes import RunOptions, load_recipe, run_recipe


def _rows(out) -> dict[str, dict]:
    with open(out / "report" / "summary.csv") as f:
        return {row["input"]: row for row in csv.DictReader(f)}


def test_demo_seg_recipe_learns_and_a_rerun_is_cached(tmp_path, monkeypatch) -> None:
    """The latent half of the recipe (the pixel baselines take minutes: the slow test)."""
    monkeypatch.setenv("LATENTCACHE_OFFLINE", "1")
    full = load_recipe("demo-seg")
    assert {m.input for m in full.models} == {"latents", "decoded", "original"}
    recipe = full.replace(models=tuple(m for m in full.models if m.input == "latents"))
    options = RunOptions(out=str(tmp_path / "run"), data_root=str(tmp_path / "data"))
    first = run_recipe(recipe, options)
    assert first.ok and (first.count("ran"), first.count("cached")) == (4, 0)
    row = _rows(tmp_path / "run")["latents"]
    assert row["count"] == "36" and float(row["bpp"]) > 0
    assert float(row["miou"]) > 0.3  # chance (all background) is about 0.15
    assert 0.0 < float(row["pixel_accuracy"]) <= 1.0
    report = tmp_path / "run" / "report"
    assert (report / "miou_vs_bpp.png").stat().st_size > 10_000
    # the eval stage's picture sheet (image, decoded, truth, prediction), in the report
    (sheet,) = (report / "pictures").glob("eval-*.png")
    assert sheet.stat().st_size > 50_000
    md = (report / "report.md").read_text()
    assert f"](pictures/{sheet.name})" in md and "## Segmentation: pictures" in md
    second = run_recipe(recipe, options)
    assert second.ok and (second.count("ran"), second.count("cached")) == (0, 4)


def test_demo_seg_recipe_plans_the_pixel_baselines(tmp_path) -> None:
    from latentcache.recipes.stages import build_stages

    stages = {s.id: s for s in build_stages(load_recipe("demo-seg"), tmp_path)}
    pixel = (
        "train-q3-mse-deeplabv3-resnet50-decoded-s0",
        "train-original-deeplabv3-resnet50-original-s0",
    )
    assert "decode-q3-mse" in stages and {*pixel, "report"} <= set(stages)
    for stage in pixel:
        assert stages[stage].problem is None and stages[stage].config["crop"] == 64
        assert stages[stage].config["model"] == "deeplabv3-resnet50"
    assert stages[pixel[0]].deps == ("decode-q3-mse",)
    assert {f"eval-{p[6:]}" for p in pixel} <= set(stages["report"].deps)


@pytest.mark.slow
def test_demo_seg_recipe_with_its_pixel_baselines(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LATENTCACHE_OFFLINE", "1")
    out = tmp_path / "run"
    args = ["run", "demo-seg", "--out", str(out), "--data-root", str(tmp_path / "data")]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "9 stages ran, 0 cached" in first.output
    rows = _rows(out)
    assert set(rows) == {"latents", "decoded", "original"}
    for row in rows.values():
        assert row["count"] == "36" and 0.0 <= float(row["miou"]) <= 1.0
        assert 0.0 < float(row["pixel_accuracy"]) <= 1.0
    assert float(rows["decoded"]["bpp"]) == pytest.approx(float(rows["latents"]["bpp"]))
    assert rows["original"]["bpp"] == ""
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and "0 stages ran, 9 cached" in second.output, second.output

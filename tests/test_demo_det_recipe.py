"""pipelines/demo-det.toml end to end, offline: encode, a Faster R-CNN on the latents, COCO
mAP / AP50, report, then all cached; with the pixel detectors on decoded and original images
in the slow test."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from latentcache.cli.main import cli
from latentcache.recipes import RunOptions, load_recipe, run_recipe


def test_demo_det_recipe_latent_half_learns_and_a_rerun_is_cached(tmp_path, monkeypatch) -> None:
    """The latent half of the recipe (the pixel detectors take many minutes: the slow test)."""
    monkeypatch.setenv("LATENTCACHE_OFFLINE", "1")
    full = load_recipe("demo-det")
    assert {m.input for m in full.models} == {"latents"} and len(full.finetunes) == 2
    recipe = full.replace(finetunes=())
    options = RunOptions(out=str(tmp_path / "run"), data_root=str(tmp_path / "data"))
    first = run_recipe(recipe, options)
    assert first.ok and (first.count("ran"), first.count("cached")) == (4, 0)
    with open(tmp_path / "run" / "report" / "summary.csv") as f:
        (row,) = [r for r in csv.DictReader(f) if r["input"] == "latents"]
    assert row["count"] == "48" and float(row["bpp"]) > 0
    # chance (boxes anywhere) is ~0; the latent detector finds the objects
    assert float(row["map_50"]) > 0.3 and 0 < float(row["map"]) < float(row["map_50"])
    assert (tmp_path / "run" / "report" / "map_vs_bpp.png").stat().st_size > 10_000
    second = run_recipe(recipe, options)
    assert second.ok and (second.count("ran"), second.count("cached")) == (0, 4)


@pytest.mark.slow
def test_demo_det_recipe_learns_and_a_rerun_is_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LATENTCACHE_OFFLINE", "1")
    out, data = tmp_path / "run", tmp_path / "data"
    args = ["run", "demo-det", "--out", str(out), "--data-root", str(data)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "8 stages ran, 0 cached" in first.output
    with open(out / "report" / "summary.csv") as f:
        rows = {r["input"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"latents", "decoded", "original"}
    assert all(r["count"] == "48" for r in rows.values())
    latents = rows["latents"]
    assert float(latents["bpp"]) > 0 and float(rows["decoded"]["bpp"]) > 0
    assert rows["original"]["bpp"] in ("", "None")
    # chance (boxes anywhere) is ~0; the latent detector finds the objects
    assert float(latents["map_50"]) > 0.3 and 0 < float(latents["map"]) < float(latents["map_50"])
    for r in rows.values():
        assert 0.0 <= float(r["map"]) <= float(r["map_50"]) <= 1.0
    assert (out / "report" / "map_vs_bpp.png").stat().st_size > 10_000
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and "0 stages ran, 8 cached" in second.output, second.output

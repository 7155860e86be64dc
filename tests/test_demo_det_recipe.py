"""pipelines/demo-det.toml end to end, offline: encode, a Faster R-CNN on the latents, the
pixel detectors on decoded and original images, COCO mAP / AP50, report, then all cached."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from latentcache.cli.main import cli


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

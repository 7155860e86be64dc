"""pipelines/demo-seg.toml end to end, offline: encode, train cResNet-39-d, mIoU, report."""

from __future__ import annotations

import csv

from click.testing import CliRunner

from latentcache.cli.main import cli


def test_demo_seg_recipe_learns_and_a_rerun_is_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LATENTCACHE_OFFLINE", "1")
    out, data = tmp_path / "run", tmp_path / "data"
    args = ["run", "demo-seg", "--out", str(out), "--data-root", str(data)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "4 stages ran, 0 cached" in first.output
    with open(out / "report" / "summary.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["count"] == "36" and float(row["bpp"]) > 0
    assert float(row["miou"]) > 0.3  # chance (all background) is about 0.15
    assert 0.0 < float(row["pixel_accuracy"]) <= 1.0
    assert (out / "report" / "miou_vs_bpp.png").stat().st_size > 10_000
    # the eval stage's picture sheet (image, decoded, truth, prediction), in the report
    (sheet,) = (out / "report" / "pictures").glob("eval-*.png")
    assert sheet.stat().st_size > 50_000
    md = (out / "report" / "report.md").read_text()
    assert f"](pictures/{sheet.name})" in md and "## Segmentation: pictures" in md
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and "0 stages ran, 4 cached" in second.output, second.output

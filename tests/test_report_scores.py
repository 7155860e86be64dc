"""The rate–accuracy report follows the scores a run carries: mIoU for segmentation."""

from __future__ import annotations

import json
from pathlib import Path

from latentcache.report.rate_accuracy import build_report, plot_name, scores_present, summarize


def _row(model: str, inp: str, quality, bpp, miou: float, seed: int = 0) -> dict:
    return {
        "recipe": "seg",
        "dataset": "demo-seg",
        "model": model,
        "arch": model,
        "input": inp,
        "quality": quality,
        "metric": "mse" if quality else None,
        "seed": seed,
        "split": "test",
        "miou": miou,
        "pixel_accuracy": miou + 0.2,
        "count": 36,
        "bpp": bpp,
        "train_seconds": 10.0,
        "epochs": 4,
        "eval_ms_per_image": 1.0,
    }


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    papers = [
        {
            "source": "torfason2018 Table 2",
            "label": "cResNet-51-d",
            "model": "cresnet51-d",
            "input": "latents",
            "bpp": 0.635,
            "miou": 62.86,
        },
        {
            "source": "torfason2018 Table 2",
            "label": "cResNet-51-d",
            "model": "cresnet51-d",
            "input": "latents",
            "bpp": 0.330,
            "miou": 61.12,
        },
        {
            "source": "torfason2018 Table 2",
            "label": "ResNet-50-d original",
            "model": "deeplab",
            "input": "original",
            "miou": 65.75,
        },
    ]
    (run / "stages").mkdir(parents=True)
    (run / "recipe.json").write_text(
        json.dumps({"name": "seg", "dataset": "demo-seg", "papers": papers})
    )
    rows = [
        _row("cresnet51-d", "latents", 1, 0.31, 0.50),
        _row("cresnet51-d", "latents", 3, 0.62, 0.55),
        _row("cresnet51-d", "latents", 3, 0.62, 0.57, seed=1),
        _row("deeplab", "original", None, None, 0.60),
    ]
    for i, r in enumerate(rows):
        (run / "stages" / f"eval-{i}").mkdir()
        (run / "stages" / f"eval-{i}" / "result.json").write_text(json.dumps(r))
    return run


def test_segmentation_report_plots_miou_beside_the_papers(tmp_path):
    out = build_report([_run_dir(tmp_path)], tmp_path / "report")
    md = (out / "report.md").read_text()
    assert "![mIoU and pixel accuracy against mean true bpp](miou_vs_bpp.png)" in md
    assert (out / "miou_vs_bpp.png").stat().st_size > 10_000
    assert not (out / "accuracy_vs_bpp.png").exists()
    assert "| mIoU % | pixel accuracy % |" in md and "top-1" not in md
    assert "| 56.0 ± 1.4 |" in md  # two seeds at q3: mean ± std, in percent
    assert "| paper mIoU % | ours mIoU % |" in md
    assert "| 62.86 | 56.0 ± 1.4 |" in md and "| 65.75 | 60.0 |" in md


def test_scores_present_and_plot_names():
    rows = [{"top1": 0.5, "top5": 0.9}]
    assert (
        scores_present(rows) == ["top1", "top5"]
        and plot_name(["top1", "top5"]) == "accuracy_vs_bpp.png"
    )
    assert scores_present([{"miou": 0.4, "top1": None}], [{"map": 30.0}]) == ["miou", "map"]
    assert plot_name(["map"]) == "map_vs_bpp.png"
    line = summarize([_row("m", "latents", 3, 0.6, 0.5), _row("m", "latents", 3, 0.6, 0.7, 1)])
    assert line[0]["miou"] == 0.6 and "top1" not in line[0]


def test_the_report_shows_each_eval_stages_picture_sheet_and_the_papers_statements(tmp_path):
    """A sheet an eval stage drew is copied into the report (the first seed of a setting)
    under its task's section; a paper's statement without a number is listed, not drawn."""
    import numpy as np
    from PIL import Image

    run = _run_dir(tmp_path)
    recipe = json.loads((run / "recipe.json").read_text())
    statement = "J-FT gains 7.1 points of mAP over T-FT"
    recipe["papers"].append(
        {"source": "chamain2021 Fig. 3", "label": "J-FT", "model": "fasterrcnn", "input": "decoded",
         "bpp": 0.08, "statement": statement, "miou": None}
    )  # fmt: skip
    (run / "recipe.json").write_text(json.dumps(recipe))
    rgb = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    for i in (1, 2):  # q3 at seeds 0 and 1: one sheet in the report
        Image.fromarray(rgb // i).save(run / "stages" / f"eval-{i}" / "pictures_test.png")
    out = build_report([run], tmp_path / "report")
    md = (out / "report.md").read_text()
    assert "## Segmentation: pictures from the latents" in md
    assert "![cresnet51-d on latents, q3 mse](pictures/eval-1.png)" in md
    assert not (out / "pictures" / "eval-2.png").exists()
    np.testing.assert_array_equal(np.asarray(Image.open(out / "pictures" / "eval-1.png")), rgb)
    assert f"- chamain2021 Fig. 3, J-FT (0.08 bpp): {statement}" in md
    assert "| chamain2021 Fig. 3 |" not in md  # not a row of the numbers' table

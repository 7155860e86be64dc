"""Recipes: TOML loading, the cached stage graph, pixel baselines and the report, on a tiny
real dataset (scikit-image textures) and the tiny real codec of conftest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from recipe_toml import eval_table, head, image_model, latent_model, paper, write_recipe

from latentcache.cli.main import cli
from latentcache.errors import ConfigError
from latentcache.recipes import RunOptions, load_recipe, run_recipe
from latentcache.recipes.spec import parse_recipe, recipe_dirs

PIPELINES = sorted((Path(__file__).resolve().parents[1] / "pipelines").glob("*.toml"))


def tiny_toml(
    data_root: Path,
    checkpoint: Path,
    quality: int = 1,
    eval_batch: int = 8,
    models: str = "all",
    latent_kwargs: str = "{ base_width = 4 }",
) -> str:
    text = head("tiny", "tiny recipe for tests", data_root, checkpoint, quality)
    text += latent_model("cres", latent_kwargs)
    if models == "all":
        text += image_model("rn-decoded", "decoded") + image_model("rn-original", "original")
    return text + eval_table(eval_batch) + paper(top5=100.0)


def ran(report) -> set[str]:
    return {o.id for o in report.outcomes if o.status == "ran"}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, texture_root, tiny_checkpoint, one_torch_thread):
    base = tmp_path_factory.mktemp("recipe")
    recipe = write_recipe(base / "tiny.toml", tiny_toml(texture_root, tiny_checkpoint))
    out = base / "run"
    report = run_recipe(recipe, RunOptions(out=str(out)))
    return base, out, report


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_every_pipeline_loads_and_cites_its_table(path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem and recipe.cites and (recipe.models or recipe.finetunes)
    if not recipe.name.startswith("demo"):  # the demos reproduce no table
        assert recipe.papers and all(
            "Table" in p.source or "section" in p.source for p in recipe.papers
        )


def test_recipes_are_found_by_name_and_the_paper_numbers_are_data() -> None:
    assert {
        "demo",
        "minc2500-gupta2024",
        "resisc45-gupta2024",
        "rsscn7-gupta2024",
        "torfason2018",
        "codevilla2021",
    } <= {p.stem for p in PIPELINES}
    minc = load_recipe("minc2500-gupta2024")
    assert {(s.quality, s.metric) for s in minc.settings} == {
        (q, m) for q in (1, 4, 8) for m in ("ms-ssim", "mse")
    }
    deng = [p for p in minc.papers if p.metric == "ms-ssim"]
    assert [(p.quality, p.top1, p.top5) for p in deng] == [
        (1, 72.59, 94.66),
        (4, 73.03, 94.78),
        (8, 76.56, 95.84),
    ]
    assert any(d.name == "pipelines" for d in recipe_dirs())


def test_bad_recipes_fail_with_the_value_and_the_valid_range() -> None:
    base = {
        "dataset": {"name": "demo"},
        "codec": {"qualities": [3]},
        "model": [{"model": "cresnet39"}],
    }
    assert parse_recipe(base).models[0].input == "latents"
    with pytest.raises(ConfigError, match=r"Unknown keys \['epoch'\].*valid"):
        parse_recipe(base | {"epoch": 3})
    with pytest.raises(ConfigError, match='invalid quality "9"'):
        parse_recipe(base | {"codec": {"qualities": [9]}})
    with pytest.raises(ConfigError, match='invalid input "pixels"'):
        parse_recipe(base | {"model": [{"model": "resnet50", "input": "pixels"}]})
    with pytest.raises(ConfigError, match="No recipe"):
        load_recipe("no-such-recipe")
    from latentcache.recipes.stages import image_train_config

    pixel = parse_recipe(
        base | {"model": [{"model": "resnet50", "input": "original", "preset": "x"}]}
    )
    with pytest.raises(ConfigError, match="preset/init apply to latent models"):
        image_train_config(pixel.models[0], pixel, None, "out", 0)


# ---------------------------------------------------------------- the cache


def test_first_run_runs_every_stage_and_reports_real_numbers(first_run) -> None:
    _, out, report = first_run
    assert report.ok and report.count("ran") == len(report.outcomes) == 9
    rows = [json.loads(p.read_text()) for p in (out / "stages").glob("eval-*/result.json")]
    assert {r["input"] for r in rows} == {"latents", "decoded", "original"}
    for r in rows:
        assert 0.0 <= r["top1"] <= r["top5"] <= 1.0 and r["count"] == 6
    latents = next(r for r in rows if r["input"] == "latents")
    assert latents["bpp"] > 0 and latents["bitstream_bytes_per_image"] > 0
    md = (out / "report" / "report.md").read_text()
    assert "accuracy_vs_bpp.png" in md and "a paper, Table 9" in md and "cres" in md
    assert (out / "report" / "accuracy_vs_bpp.png").stat().st_size > 10_000
    assert (out / "report" / "summary.csv").read_text().count("\n") == 4  # header + 3 lines


def test_a_second_run_does_no_work(first_run, texture_root, tiny_checkpoint) -> None:
    base, out, _ = first_run
    records = {p: p.stat().st_mtime_ns for p in out.rglob("stage.json")}
    again = run_recipe(load_recipe(base / "tiny.toml"), RunOptions(out=str(out)))
    assert again.ok and ran(again) == set() and again.count("cached") == 9
    assert {p: p.stat().st_mtime_ns for p in out.rglob("stage.json")} == records


def test_changing_the_quality_reruns_encode_and_what_follows_only(
    first_run, texture_root, tiny_checkpoint
) -> None:
    base, out, _ = first_run
    recipe = write_recipe(base / "q2.toml", tiny_toml(texture_root, tiny_checkpoint, quality=2))
    report = run_recipe(recipe, RunOptions(out=str(out)))
    assert report.ok
    assert ran(report) == {
        "encode-q2-mse",
        "decode-q2-mse",
        "train-q2-mse-cres-s0",
        "eval-q2-mse-cres-s0",
        "train-q2-mse-rn-decoded-s0",
        "eval-q2-mse-rn-decoded-s0",
        "report",
    }
    assert {o.id for o in report.outcomes if o.status == "cached"} == {
        "train-original-rn-original-s0",
        "eval-original-rn-original-s0",
    }


def test_changing_an_eval_option_reruns_eval_and_report_only(
    first_run, texture_root, tiny_checkpoint
) -> None:
    base, out, _ = first_run
    recipe = write_recipe(base / "e.toml", tiny_toml(texture_root, tiny_checkpoint, eval_batch=3))
    report = run_recipe(recipe, RunOptions(out=str(out)))
    assert report.ok
    assert ran(report) == {
        "eval-q1-mse-cres-s0",
        "eval-q1-mse-rn-decoded-s0",
        "eval-original-rn-original-s0",
        "report",
    }


def test_force_and_only_select_stages(first_run) -> None:
    base, out, _ = first_run
    recipe = load_recipe(base / "tiny.toml")
    dry = run_recipe(recipe, RunOptions(out=str(out), dry_run=True, force=("encode",)))
    assert [o.status for o in dry.outcomes if o.kind == "encode"] == ["would run"]
    only = run_recipe(recipe, RunOptions(out=str(out), only=("eval",)))
    assert ran(only) <= {o.id for o in only.outcomes if o.kind == "eval"} and only.ok
    assert only.outcomes[-1].status in ("cached", "not run")  # the report is outside --only
    fresh = run_recipe(recipe, RunOptions(out=str(base / "fresh"), only=("train-q1-mse-cres-s0",)))
    train = next(o for o in fresh.outcomes if o.id == "train-q1-mse-cres-s0")
    assert train.status == "blocked" and "encode-q1-mse, which was not run" in train.reason
    assert not fresh.ok and ran(fresh) == set()
    with pytest.raises(ConfigError, match='--only "trian" names no stage'):
        run_recipe(recipe, RunOptions(out=str(out), only=("trian",)))


def test_report_command_over_run_folders(first_run, tmp_path) -> None:
    _, out, _ = first_run
    result = CliRunner().invoke(cli, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "report.md").is_file() and (
        tmp_path / "rep" / "results.csv"
    ).is_file()
    bad = CliRunner().invoke(cli, ["report", str(tmp_path), "--out", str(tmp_path / "r2")])
    assert bad.exit_code == 1 and "not a `latentcache run` folder" in bad.output


# ---------------------------------------------------------------- failures and missing inputs


def test_a_failed_stage_stops_its_dependents_and_says_why(
    tmp_path, texture_root, tiny_checkpoint, one_torch_thread
) -> None:
    text = tiny_toml(
        texture_root, tiny_checkpoint, models="latents", latent_kwargs="{ no_such_option = 1 }"
    )
    (tmp_path / "bad.toml").write_text(text)
    result = CliRunner().invoke(
        cli, ["run", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "train-q1-mse-cres-s0" in result.output and "failed" in result.output
    assert "needs train-q1-mse-cres-s0, which failed" in result.output
    record = json.loads((tmp_path / "o/stages/encode-q1-mse/stage.json").read_text())
    assert record["status"] == "done"  # finished stages stay usable
    failed = json.loads((tmp_path / "o/stages/train-q1-mse-cres-s0/stage.json").read_text())
    assert failed["status"] == "failed" and "no_such_option" in failed["reason"]


@pytest.mark.parametrize("dry", [True, False])
def test_minc_without_minc_says_what_is_missing_and_where_to_get_it(
    tmp_path, monkeypatch, dry
) -> None:
    monkeypatch.setenv("LATENTCACHE_DATA", str(tmp_path / "datasets"))
    monkeypatch.setenv("LATENTCACHE_OFFLINE", "1")
    out = tmp_path / "out"
    args = ["run", "minc2500-gupta2024", "--out", str(out)] + (["--dry-run"] if dry else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "minc dataset not found" in result.output
    assert "http://opensurfaces.cs.cornell.edu/static/minc/minc-2500.tar.gz" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # no work done
    if dry:
        assert "encode-q1-ms-ssim" in result.output and "would run" in result.output


# ---------------------------------------------------------------- the decode stage


def test_decode_writes_what_stock_decompress_reconstructs(
    first_run, tiny_model, texture_root
) -> None:
    from PIL import Image

    from latentcache.codec.evaluate import codec_roundtrip
    from latentcache.pixels.decode import read_image_index

    _, out, _ = first_run
    images = out / "stages" / "decode-q1-mse" / "images"
    index = read_image_index(images)
    assert len(index["samples"]) == 18 and index["decode_ms_per_image"] > 0
    for sample in index["samples"][:2]:
        source_file = next(texture_root.rglob(Path(sample["key"]).name + ".png"))
        source = np.asarray(Image.open(source_file).convert("RGB"))
        decoded = np.asarray(Image.open(images / sample["path"]))
        expected, _ = codec_roundtrip(tiny_model, source)  # stock compress + decompress
        assert decoded.shape == source.shape and np.array_equal(decoded, expected)


# ---------------------------------------------------------------- the demo recipe, end to end


def test_demo_recipe_runs_end_to_end_offline_and_a_rerun_is_cached(tmp_path, monkeypatch) -> None:
    """pipelines/demo.toml as `make demo` runs it (about a minute on 2 cores): every stage runs,
    the report holds real accuracies, and a second run reuses every stage."""
    import csv

    monkeypatch.setenv("LATENTCACHE_OFFLINE", "1")
    args = ["run", "demo", "--out", str(tmp_path / "demo"), "--data-root", str(tmp_path / "data")]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "9 stages ran, 0 cached" in first.output
    report = tmp_path / "demo" / "report"
    with open(report / "summary.csv") as f:
        rows = {r["input"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["decoded", "latents", "original"]
    for row in rows.values():
        assert row["count"] == "75" and 0.0 <= float(row["top1"]) <= 1.0
        assert float(row["train_seconds"]) > 0
    assert float(rows["latents"]["top1"]) > 1 / 3  # above chance on 3 classes
    assert float(rows["latents"]["bpp"]) > 0 and float(rows["decoded"]["decode_ms_per_image"]) > 0
    assert "cresnet39-quarter" in (report / "report.md").read_text()
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and "0 stages ran, 9 cached" in second.output, second.output


def test_seeds_make_one_training_per_seed_and_the_report_gives_mean_and_std(
    first_run, texture_root, tiny_checkpoint
) -> None:
    from latentcache.report.rate_accuracy import summarize

    base, out, _ = first_run
    plan = run_recipe(
        load_recipe(base / "tiny.toml"), RunOptions(out=str(out), dry_run=True, seeds=(0, 1, 2))
    )
    trains = [o.id for o in plan.outcomes if o.id.startswith("train-q1-mse-cres")]
    assert trains == [f"train-q1-mse-cres-s{s}" for s in (0, 1, 2)]
    assert next(o for o in plan.outcomes if o.id == "train-q1-mse-cres-s0").status == "cached"
    row = json.loads(next((out / "stages").glob("eval-q1-mse-cres-s0/result.json")).read_text())
    rows = [row | {"seed": s, "top1": t} for s, t in ((0, 0.5), (1, 0.7), (2, 0.9))]
    (line,) = summarize(rows)
    assert line["seeds"] == [0, 1, 2] and line["top1"] == pytest.approx(0.7)
    assert line["top1_std"] == pytest.approx(0.2)

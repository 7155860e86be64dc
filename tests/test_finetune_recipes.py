"""Fine-tuning recipes: a tiny recipe on real textures with the tiny real codec runs
encode -> train -> finetune (joint, codec, torfason's control) -> re-encode -> eval -> report;
the papers' fine-tuning recipes load, resolve their presets and name what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from recipe_toml import eval_table, finetune_entry, head, image_model, latent_model, paper

from latentcache.cli.main import cli
from latentcache.errors import ConfigError
from latentcache.recipes import RunOptions, load_recipe, run_recipe
from latentcache.recipes.stages import build_stages

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_finetune_toml(data_root: Path, checkpoint: Path) -> str:
    return (
        head("tiny-ft", "tiny fine-tuning recipe for tests", data_root, checkpoint)
        + latent_model("cres")
        + image_model("rn-decoded", "decoded", max_batches=2)
        + finetune_entry("tft", 'classifier = "rn-decoded"\nmode = "task"')
        + finetune_entry("jft", 'classifier = "cres"\nmode = "joint"\nbeta = 1.0')
        + finetune_entry("cft", 'classifier = "cres"\nmode = "codec"\nbeta = 1.0')
        + finetune_entry("ctrl", 'preset = "torfason2018-control"\nthen_train = "cres"')
        + eval_table()
        + paper()
    )


@pytest.fixture(scope="module")
def ft_run(tmp_path_factory, texture_root, tiny_checkpoint, one_torch_thread):
    base = tmp_path_factory.mktemp("ftrecipe")
    (base / "tiny-ft.toml").write_text(tiny_finetune_toml(texture_root, tiny_checkpoint))
    recipe = load_recipe(base / "tiny-ft.toml")
    out = base / "run"
    return recipe, out, run_recipe(recipe, RunOptions(out=str(out)))


def _record(out: Path, stage: str) -> dict:
    return json.loads((out / "stages" / stage / "stage.json").read_text())


def test_finetune_chain_runs_to_the_report(ft_run) -> None:
    recipe, out, report = ft_run
    assert report.ok, [(o.id, o.reason) for o in report.outcomes if o.reason]
    kinds = {o.id: o.kind for o in report.outcomes}
    for ft in ("jft", "cft", "ctrl"):
        assert kinds[f"finetune-q1-mse-{ft}-s0"] == "finetune" == kinds["finetune-q1-mse-tft-s0"]
        assert kinds[f"encode-q1-mse-{ft}-s0"] == "encode"
    assert {"eval-q1-mse-cres+jft-s0", "eval-q1-mse-cres+cft-s0"} <= set(kinds)
    assert kinds["train-q1-mse-cres+ctrl-s0"] == "train"  # the control's classifier from scratch
    assert "encode-q1-mse-tft-s0" not in kinds  # T-FT of the pixel classifier: same codec
    pix = json.loads((out / "stages" / "eval-q1-mse-rn-decoded+tft-s0" / "result.json").read_text())
    assert pix["input"] == "decoded" and pix["finetune"]["mode"] == "task"
    assert pix["bpp"] == _record(out, "encode-q1-mse")["result"]["bpp"]["test"]
    assert all(o.status == "ran" for o in report.outcomes)
    md = (out / "report" / "report.md").read_text()
    assert "## Fine-tuning against the frozen codec" in md
    assert "| cres+jft | 1 | mse | 0 | joint | 1 | 0 | 1 |" in md
    assert "| cres+ctrl | 1 | mse | 0 | codec | 1 | 1 | 1 |" in md


def test_rates_come_from_the_re_encoded_bytes(ft_run) -> None:
    _, out, _ = ft_run
    frozen = _record(out, "encode-q1-mse")["result"]
    for ft in ("jft", "cft", "ctrl"):
        tuned = _record(out, f"encode-q1-mse-{ft}-s0")["result"]
        finetune = _record(out, f"finetune-q1-mse-{ft}-s0")["result"]
        codec = tuned["codec"]
        # the re-encoded store is the fine-tuned codec's, not the parent's
        assert codec["weights_sha256"] == finetune["codec"]["weights_sha256"]
        assert codec["weights_sha256"] != frozen["codec"]["weights_sha256"]
        manifest = json.loads(
            (out / "stages" / f"encode-q1-mse-{ft}-s0" / "store" / "manifest.json").read_text()
        )
        row_name = "cres+" + ft
        row = json.loads(
            (out / "stages" / f"eval-q1-mse-{row_name}-s0" / "result.json").read_text()
        )
        assert row["bpp"] == manifest["splits"]["test"]["bpp_mean"] == tuned["bpp"]["test"]
        assert row["bpp_likelihood_train"] == finetune["train_bpp_likelihood"] is not None
        assert row["baseline_model"] == "cres" and row["finetune"]["name"] == ft
        assert 0 <= row["top1"] <= 1 and row["count"] > 0


def test_the_fine_tuned_classifier_refuses_the_frozen_store(ft_run) -> None:
    from latentcache.errors import CodecMismatchError
    from latentcache.train import evaluate_run

    _, out, _ = ft_run
    run = out / "stages" / "finetune-q1-mse-jft-s0" / "run"
    with pytest.raises(CodecMismatchError):
        evaluate_run(run, out / "stages" / "encode-q1-mse" / "store", "test", write=False)


def test_a_second_run_reuses_every_stage_and_beta_changes_rerun_downstream(ft_run) -> None:
    recipe, out, _ = ft_run
    again = run_recipe(recipe, RunOptions(out=str(out)))
    assert again.ok and {o.status for o in again.outcomes} == {"cached"}
    entries = tuple(f if f.name != "cft" else f.__class__(**{**f.__dict__, "beta": 0.5})
                    for f in recipe.finetunes)  # fmt: skip
    dry = run_recipe(recipe.replace(finetunes=entries), RunOptions(out=str(out), dry_run=True))
    would = {o.id for o in dry.outcomes if o.status == "would run"}
    assert {"finetune-q1-mse-cft-s0", "encode-q1-mse-cft-s0", "eval-q1-mse-cres+cft-s0"} <= would
    assert "finetune-q1-mse-jft-s0" not in would and "train-q1-mse-cres-s0" not in would


# ---------------------------------------------------------------- the papers' recipes

NEW = {
    "minc2500-gupta2024-joint": ("minc dataset not found", "finetune-q1-mse-joint-s0"),
    "chamain2021-minc-adaptation": ("minc dataset not found", "finetune-q4-mse-jft-q4-b0.1-s0"),
    "chamain2021-detection": ("coco dataset not found", "finetune-q4-mse-jft-q4-b0.1-s0"),
    "codevilla2021-fewshot": ("voc-det dataset not found", "finetune-q6-mse-tfa-10shot-s0"),
    "torfason2018-control": ("imagefolder", "train-q5-mse-cresnet51+control-s0"),
}


@pytest.mark.parametrize("name", sorted(NEW))
def test_fine_tuning_recipes_dry_run_lists_stages_and_what_is_missing(
    name, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("LATENTCACHE_DATA", str(tmp_path / "datasets"))
    monkeypatch.setenv("LATENTCACHE_OFFLINE", "1")
    recipe = load_recipe(name)
    assert recipe.finetunes and recipe.papers
    assert all("Table" in p.source or "section" in p.source for p in recipe.papers)
    stages = build_stages(recipe, tmp_path / "x")
    assert not [s.problem for s in stages if s.kind == "finetune" and s.problem]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", name, "--out", str(out), "--dry-run"])
    why, stage = NEW[name]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert why in result.output and stage in result.output and "would run" in result.output
    assert not out.exists()


def test_fine_tuning_recipes_resolve_the_papers_settings() -> None:
    from latentcache.recipes.finetune_stages import finetune_config

    chamain = load_recipe("chamain2021-minc-adaptation")
    by_name = {f.name: f for f in chamain.finetunes}
    setting = next(s for s in chamain.settings if s.quality == 4)
    jft = finetune_config(chamain, setting, by_name["jft-q4-b0.3186"], 0, classifier="c")
    assert (jft.mode, jft.beta, jft.epochs, jft.codec_epochs, jft.lr) == (
        "joint",
        0.3186,
        6,
        5,
        1e-4,
    )
    assert (jft.classifier_optimizer, jft.classifier_lr) == ("sgd", 0.01)
    tft = finetune_config(chamain, setting, by_name["tft-q4"], 0, classifier="c")
    assert tft.mode == "task" and tft.epochs == 6
    stages = {s.id for s in build_stages(chamain, Path("x")) if s.kind == "finetune"}
    assert (
        "finetune-q2-mse-cft-q2-b0.6675-s0" in stages
        and "finetune-q1-mse-cft-q2-b0.6675-s0" not in stages
    )
    gupta = load_recipe("minc2500-gupta2024-joint")
    cfg = finetune_config(gupta, gupta.settings[0], gupta.finetunes[0], 0, classifier="c")
    assert (cfg.mode, cfg.beta, cfg.gamma) == ("joint", 0.0, 0.0)
    joint = [p for p in gupta.papers if p.model.endswith("+joint")]
    assert [(p.quality, p.top1) for p in joint] == [(1, 66.26), (4, 67.13), (8, 68.28)]


def test_bad_finetune_entries_fail_with_the_valid_values(tmp_path, texture_root, tiny_checkpoint):
    text = tiny_finetune_toml(texture_root, tiny_checkpoint)
    with pytest.raises(ConfigError, match='classifier "nope" should name a \\[\\[model\\]\\]'):
        (tmp_path / "a.toml").write_text(text.replace('classifier = "cres"\nmode = "joint"',
                                                      'classifier = "nope"\nmode = "joint"'))  # fmt: skip
        load_recipe(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text(text.replace('then_train = "cres"\n', ""))
    stages = build_stages(load_recipe(tmp_path / "b.toml"), tmp_path)
    ctrl = next(s for s in stages if s.id == "finetune-q1-mse-ctrl-s0")
    assert "name it with then_train" in ctrl.problem
    (tmp_path / "d.toml").write_text(text.replace('mode = "task"', 'mode = "joint"'))
    stages = build_stages(load_recipe(tmp_path / "d.toml"), tmp_path)
    tft = next(s for s in stages if s.id == "finetune-q1-mse-tft-s0")
    assert "reads decoded pixels, so it fine-tunes in mode task, not joint" in tft.problem
    (tmp_path / "c.toml").write_text(text.replace('name = "jft"', 'name = "jft"\nbogus = 1'))
    with pytest.raises(ConfigError, match=r"Unknown keys \['bogus'\] in .*\[\[finetune\]\] #2"):
        load_recipe(tmp_path / "c.toml")

"""Detection [[finetune]] entries of a recipe: what they resolve to, their stage graph, and
the entries that are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentcache.errors import ConfigError
from latentcache.recipes import load_recipe
from latentcache.recipes.detection_stages import detection_finetune_config
from latentcache.recipes.spec import parse_recipe
from latentcache.recipes.stages import build_stages


def test_chamain2021_detection_resolves_table_1_and_starts_from_the_reference_detector():
    recipe = load_recipe("chamain2021-detection")
    assert recipe.dataset == "coco" and [s.quality for s in recipe.settings] == [1, 2, 4]
    by_name = {f.name: f for f in recipe.finetunes}
    points = [(f.quality, f.beta) for f in recipe.finetunes if f.mode == "joint"]
    assert points == [(1, 1.0), (2, 0.6675), (4, 0.3186), (4, 0.1)]
    assert [(f.quality, f.beta) for f in recipe.finetunes if f.mode == "codec"] == points
    q4 = next(s for s in recipe.settings if s.quality == 4)
    cfg = detection_finetune_config(recipe, q4, by_name["jft-q4-b0.1"], 0, detector="d")
    assert (cfg.mode, cfg.beta, cfg.epochs, cfg.batch_size, cfg.lr) == ("joint", 0.1, 6, 2, 1e-4)
    assert cfg.codec.quality == 4 and cfg.eval_split == "validate" and cfg.detector == "d"
    stages = {s.id: s for s in build_stages(recipe, Path("x"))}
    assert not any(s.kind == "encode" for s in stages.values())  # no [[model]] reads a store
    assert stages["finetune-q4-mse-jft-q4-b0.1-s0"].deps == ("finetune-original-fasterrcnn-r50-s0",)
    assert "finetune-q1-mse-jft-q4-b0.1-s0" not in stages
    assert stages["finetune-original-fasterrcnn-r50-s0"].external == {"dataset_index_sha256": None}
    assert not [s.problem for s in stages.values() if s.problem]
    said = [(p.bpp, p.statement) for p in recipe.papers if p.statement]
    assert [b for b, _ in said] == [0.08, 0.25, 0.1] and "7.1" in said[0][1]


def test_codevilla2021_fewshot_is_tfa_split_1():
    recipe = load_recipe("codevilla2021-fewshot")
    base, *shots = recipe.finetunes
    assert len(base.options["classes"]) == 15 and "bird" not in base.options["classes"]
    assert [f.options["shots"] for f in shots] == [1, 2, 3, 5, 10]
    assert all(f.classifier == "base" and f.options["train_only"] == "box_predictor"
               and len(f.options["classes"]) == 20 for f in shots)  # fmt: skip
    assert shots[0].options["novel"] == ["bird", "bus", "cow", "motorbike", "sofa"]
    ours = [p.nap50 for p in recipe.papers if p.label.startswith("TFA w/fc, our compression")]
    assert ours == [35.6, 27.4, 42.8, 54.2, 55.6]
    stages = {s.id: s for s in build_stages(recipe, Path("x"))}
    assert stages["finetune-q6-mse-tfa-5shot-s0"].deps == ("finetune-q6-mse-base-s0",)
    assert not [s.problem for s in stages.values() if s.problem]


BASE = {"name": "t", "dataset": {"name": "demo-det"}, "codec": {"qualities": [3]}}


def _ft(**kw) -> dict:
    return {"name": "a", "task": "detection", "mode": "task"} | kw


def test_bad_detection_entries_are_refused_with_the_valid_values():
    with pytest.raises(ConfigError, match='classifier "b" should name an earlier detection'):
        parse_recipe(BASE | {"finetune": [_ft(classifier="b"), _ft(name="b")]})
    with pytest.raises(ConfigError, match="takes no then_train or preset"):
        parse_recipe(BASE | {"finetune": [_ft(preset="chamain2021-tft-q1")]})
    with pytest.raises(ConfigError, match='task "segmentation", should be one of'):
        parse_recipe(BASE | {"finetune": [_ft(task="segmentation")]})
    recipe = parse_recipe(BASE | {"finetune": [_ft(options={"bogus": 1})]})
    stage = build_stages(recipe, Path("x"))[0]
    assert "unknown detection options ['bogus']" in stage.problem
    with pytest.raises(ConfigError, match="names quality 5, not among the recipe's qualities"):
        build_stages(parse_recipe(BASE | {"finetune": [_ft(quality=5)]}), Path("x"))

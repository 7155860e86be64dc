"""The stage graph of a recipe, and what each stage calls (the existing ``run_*`` functions).

::

    encode-<setting> ─┬─────────────────► train-<setting>-<model>-s<seed> ─► eval-… ─┐
     (run_encode)     └► decode-<setting> ► train-… (decoded images)    ─► eval-… ─┼─► report
                         (run_decode)                                               │
    train-original-<model>-s<seed> (the source images) ───────────────► eval-… ─┘
    [[finetune]]: train-… ─► finetune-… ─► encode-…-<ft> ─► eval-… (finetune_stages.py)
    [[finetune]] task = "detection": [finetune-…] ─► finetune-… ─► eval-… (detection_stages.py)

Each stage (``stage.py``) has a resolved config (JSON, ``configs.py``), the stages it reads,
and a function ``run(ctx) -> result`` (``stage_runs.py``); ``model_stages.py`` adds the
train/eval pair of a model entry; :mod:`latentcache.recipes.runner` decides what runs.
"""

from __future__ import annotations

from pathlib import Path

from latentcache.recipes.configs import encode_config, image_train_config, latent_train_config
from latentcache.recipes.detection_stages import detection_finetune_stages
from latentcache.recipes.finetune_stages import finetune_stages
from latentcache.recipes.model_stages import train_eval_stages
from latentcache.recipes.spec import Recipe
from latentcache.recipes.stage import KINDS, Stage, StageContext
from latentcache.recipes.stage_runs import decode_stage_run, encode_stage_run, report_stage_run

__all__ = [
    "KINDS",
    "Stage",
    "StageContext",
    "build_stages",
    "image_train_config",
    "latent_train_config",
]


def build_stages(recipe: Recipe, run_dir: Path) -> list[Stage]:
    """Every stage of ``recipe`` in a topological order (dependencies first)."""
    stages: list[Stage] = []
    evals: list[str] = []
    # a setting's store is made for the [[model]]s that read it (detection [[finetune]]s
    # compress their own eval split)
    stored = recipe.settings if any(m.input != "original" for m in recipe.models) else ()
    for setting in stored:
        enc_id = f"encode-{setting.name}"
        enc_cfg = encode_config(recipe, setting, "").content_dict()
        stages.append(
            Stage(
                enc_id,
                "encode",
                enc_cfg,
                (),
                encode_stage_run(recipe, setting),
                {"quality": setting.quality, "metric": setting.metric},
                {"codec_sha256": None, "dataset_index_sha256": None},
            )
        )
        dec_id = None
        if any(m.input == "decoded" for m in recipe.models):
            dec_id = f"decode-{setting.name}"
            stages.append(
                Stage(dec_id, "decode", recipe.decode, (enc_id,), decode_stage_run(setting, enc_id))
            )
        for entry in recipe.models:
            if entry.input == "original":
                continue
            source = enc_id if entry.input == "latents" else dec_id
            for seed in recipe.seeds:
                pair = train_eval_stages(
                    recipe,
                    entry,
                    setting.name,
                    seed,
                    source,
                    enc_id,
                    dec_id if entry.input == "decoded" else None,
                )
                stages += pair
                evals.append(pair[1].id)
    for entry in recipe.models:
        if entry.input == "original":
            for seed in recipe.seeds:
                pair = train_eval_stages(recipe, entry, "original", seed, None, None, None)
                stages += pair
                evals.append(pair[1].id)
    # [[finetune]]: fine-tune, re-encode, evaluate; a detector's: fine-tune, evaluate
    tuned = finetune_stages(recipe) + detection_finetune_stages(recipe)
    stages += tuned
    evals += [s.id for s in tuned if s.kind == "eval"]
    report_cfg = {"papers": [p.__dict__ for p in recipe.papers], "name": recipe.name}
    stages.append(
        Stage("report", "report", report_cfg, tuple(evals), report_stage_run(recipe, run_dir))
    )
    return stages

"""The train and eval stages of one model entry, one setting (or the original images) and
one seed."""

from __future__ import annotations

from latentcache.errors import ConfigError
from latentcache.recipes.configs import image_train_config, key_config, latent_train_config
from latentcache.recipes.spec import ModelEntry, Recipe
from latentcache.recipes.stage import Stage
from latentcache.recipes.stage_runs import eval_stage_run, train_stage_run

__all__ = ["train_eval_stages"]


def train_eval_stages(
    recipe: Recipe, entry: ModelEntry, tag: str, seed: int, source_id, encode_id, decode_id
):
    train_id = f"train-{tag}-{entry.name}-s{seed}"
    meta = {"quality": None, "metric": None, "seed": seed}
    if tag != "original":
        setting = next(s for s in recipe.settings if s.name == tag)
        meta |= {"quality": setting.quality, "metric": setting.metric}
    problem = None
    try:
        if entry.input == "latents":
            cfg = latent_train_config(entry, "", "", seed).to_dict()
        else:
            cfg = image_train_config(entry, recipe, "", "", seed).to_dict()
    except ConfigError as exc:
        cfg, problem = {"error": str(exc)}, str(exc)
    train = Stage(
        train_id,
        "train",
        key_config(cfg),
        (source_id,) if source_id else (),
        train_stage_run(entry, recipe, seed, source_id),
        meta,
        problem=problem,
    )
    if entry.input == "original":
        train.external = {"dataset_index_sha256": None}  # filled in by the runner
    deps = tuple(d for d in (train_id, encode_id, decode_id) if d)
    ev = Stage(
        f"eval-{tag}-{entry.name}-s{seed}",
        "eval",
        {"eval": recipe.eval, "model": entry.name},
        deps,
        eval_stage_run(recipe, entry, train_id, encode_id, decode_id),
        meta,
    )
    return [train, ev]

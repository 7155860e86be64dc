"""The ``finetune`` stages of a recipe: fine-tune, re-encode with the new codec, evaluate.

::

    encode-<s> ─► train-<s>-<model>-s<seed> ─► finetune-<s>-<ft>-s<seed>   (run_finetune)
                                                  │ codec.pt (new sha256) + classifier run
                                                  ▼
                                       encode-<s>-<ft>-s<seed>              (run_encode)
                                                  ▼
               eval-<s>-<model>+<ft>-s<seed> (the fine-tuned classifier) ─┐
           or  train-<s>-<then>+<ft>-s<seed> ─► eval-… (torfason's control)├─► report
    a pixel classifier (decoded): task mode; its eval reads decode-<s>    ┘
Each eval row carries the true bpp of the re-encoded store (real bytes), the training
likelihood bpp of the fine-tuning, and names its frozen-codec baseline row.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from latentcache.errors import ConfigError
from latentcache.recipes.configs import codec_spec, encode_config, key_config
from latentcache.recipes.model_stages import train_eval_stages
from latentcache.recipes.spec import FinetuneEntry, ModelEntry, Recipe, Setting
from latentcache.recipes.stage import Stage
from latentcache.recipes.stage_runs import encode_stage_run, eval_stage_run
from latentcache.store.manifest import file_sha256

__all__ = ["finetune_config", "finetune_stages", "finetune_settings"]

_NOT_KEY = ("out", "classifier", "command", "progress", "resume")


def finetune_settings(recipe: Recipe, entry: FinetuneEntry) -> list[Setting]:
    """The recipe's settings this entry applies to: its quality, its preset's, else all."""
    from latentcache.finetune.presets import resolve_options

    _, quality = resolve_options(entry.preset, {})
    if entry.quality is not None and quality is not None and entry.quality != quality:
        raise ConfigError(
            f'finetune "{entry.name}": quality {entry.quality}, but preset {entry.preset} is '
            f"for quality {quality}"
        )
    quality = entry.quality if entry.quality is not None else quality
    if quality is None:
        return list(recipe.settings)
    chosen = [s for s in recipe.settings if s.quality == quality]
    if not chosen:
        why = f"preset {entry.preset} is for" if entry.quality is None else "names"
        raise ConfigError(
            f'finetune "{entry.name}": {why} quality {quality}, not among the recipe\'s '
            f"qualities {sorted({s.quality for s in recipe.settings})}"
        )
    return chosen


def finetune_config(
    recipe: Recipe,
    setting: Setting,
    entry: FinetuneEntry,
    seed: int,
    out: str = "",
    classifier: str | None = None,
    resume: bool = False,
    command: str = "",
):
    """The FinetuneConfig of one finetune stage: preset < entry < recipe data and codec."""
    from latentcache.finetune import FinetuneConfig
    from latentcache.finetune.presets import get_preset, resolve_options

    fields, _ = resolve_options(entry.preset, entry.given())
    if entry.preset and get_preset(entry.preset).then_train and not entry.then_train:
        raise ConfigError(
            f'finetune "{entry.name}": preset {entry.preset} retrains a classifier from scratch '
            "on the re-encoded store; name it with then_train = <latent [[model]]>"
        )
    return FinetuneConfig.from_dict(
        {"progress": False, **fields}
        | {
            "dataset": recipe.dataset,
            "data_root": recipe.data_root,
            "dataset_options": recipe.dataset_options,
            "codec": codec_spec(recipe, setting),
            "out": out,
            "classifier": classifier,
            "seed": seed,
            "resume": resume,
            "preset": entry.preset,
            "command": command,
        }
    )


def _run_finetune(recipe: Recipe, setting: Setting, entry: FinetuneEntry, seed: int, train_id):
    def run(ctx) -> dict:
        from latentcache.finetune import run_finetune

        classifier = str(Path(ctx.deps[train_id]["dir"]) / "run") if train_id else None
        out = ctx.dir / "run"
        command = ctx.shared.get("command", "")
        cfg = finetune_config(
            recipe, setting, entry, seed, str(out), classifier, ctx.resume, command
        )
        start = time.perf_counter()
        summary = run_finetune(cfg)
        files = [out / "codec.pt"] + ([out / "last.pt"] if (out / "last.pt").is_file() else [])
        identity = hashlib.sha256("".join(map(file_sha256, files)).encode()).hexdigest()
        return {
            "identity": identity,
            "train_seconds": time.perf_counter() - start,
            "epochs": cfg.epochs,
            "finetune": _describe(entry, cfg),
            "train_bpp_likelihood": summary.get("train_bpp_likelihood"),
            "frozen": summary.get("frozen"),
            "finetuned": summary.get("finetuned"),
            "codec": summary["codec"],
        }

    return run


def _describe(entry: FinetuneEntry, cfg) -> dict:
    return {"name": entry.name, "preset": cfg.preset, "mode": cfg.mode, "beta": cfg.beta,
            "gamma": cfg.gamma, "epochs": cfg.epochs}  # fmt: skip


def _run_reencode(recipe: Recipe, setting: Setting, ft_id: str):
    def run(ctx) -> dict:
        from latentcache.codec.load import load_codec

        checkpoint = str(Path(ctx.deps[ft_id]["dir"]) / "run" / "codec.pt")
        tuned = _with_checkpoint(recipe, checkpoint)
        codec = load_codec(codec_spec(tuned, setting))
        shared = ctx.shared | {"codecs": {setting.name: codec}}
        inner = type(ctx)(ctx.dir, ctx.deps, ctx.resume, shared, ctx.meta)
        return encode_stage_run(tuned, setting)(inner)

    return run


def _with_checkpoint(recipe: Recipe, checkpoint: str) -> Recipe:
    codec = {**recipe.codec, "source": "checkpoint", "checkpoint": checkpoint}
    return recipe.replace(codec=codec)


def _with_finetune(run_eval, ft_id: str, baseline: str):
    """The eval row plus the fine-tuning: its settings, its likelihood rate, its baseline."""

    def run(ctx) -> dict:
        import json

        row = run_eval(ctx)
        row.pop("identity")
        ft = ctx.deps[ft_id]["result"]
        row |= {
            "finetune": ft["finetune"],
            "bpp_likelihood_train": ft["train_bpp_likelihood"],
            "baseline_model": baseline,
        }
        (ctx.dir / "result.json").write_text(json.dumps(row, indent=1, sort_keys=True))
        return row | {"identity": file_sha256(ctx.dir / "result.json")}

    return run


def _stages_for(recipe: Recipe, entry: FinetuneEntry, setting: Setting, seed: int) -> list:
    meta = {"quality": setting.quality, "metric": setting.metric, "seed": seed}
    train_id = f"train-{setting.name}-{entry.classifier}-s{seed}" if entry.classifier else None
    ft_id = f"finetune-{setting.name}-{entry.name}-s{seed}"
    problem, cfg = None, {}
    try:
        cfg = key_config(finetune_config(recipe, setting, entry, seed, "", train_id).to_dict())
        cfg = {k: v for k, v in cfg.items() if k not in _NOT_KEY}
    except ConfigError as exc:
        cfg, problem = {"error": str(exc)}, str(exc)
    ft = Stage(ft_id, "finetune", cfg, (train_id,) if train_id else (),
               _run_finetune(recipe, setting, entry, seed, train_id), meta,
               {"codec_sha256": None, "dataset_index_sha256": None}, problem)  # fmt: skip
    enc_id = f"encode-{setting.name}-{entry.name}-s{seed}"
    enc_cfg = encode_config(_with_checkpoint(recipe, ""), setting, "").content_dict()
    enc = Stage(enc_id, "encode", enc_cfg, (ft_id,), _run_reencode(recipe, setting, ft_id), meta,
                {"dataset_index_sha256": None})  # fmt: skip
    models = {m.name: m for m in recipe.models}
    if entry.then_train:  # a new classifier from scratch on the re-encoded store
        base = models[entry.then_train]
        renamed = ModelEntry(**{**base.__dict__, "name": f"{base.name}+{entry.name}"})
        train, ev = train_eval_stages(recipe, renamed, setting.name, seed, enc_id, enc_id, None)
        ev.deps += (ft_id,)
        ev.run = _with_finetune(ev.run, ft_id, base.name)
        return [ft, enc, train, ev]
    if not entry.classifier:
        return [ft, enc]  # the codec alone, nothing to evaluate: the report has its rate
    base = models[entry.classifier]
    tuned = ModelEntry(name=f"{base.name}+{entry.name}", model=base.model, input=base.input)
    out = [ft, enc]
    dec_id = None
    if base.input == "decoded":  # T-FT of a pixel classifier: the codec (and its images) stay
        out, dec_id, enc_id = [ft], f"decode-{setting.name}", f"encode-{setting.name}"
        if not problem and cfg.get("mode") != "task":
            ft.problem = (
                f'finetune "{entry.name}": classifier "{base.name}" reads decoded pixels, so '
                f"it fine-tunes in mode task, not {cfg.get('mode')}"
            )
    run_eval = eval_stage_run(recipe, tuned, ft_id, enc_id, dec_id)
    deps = tuple(d for d in (ft_id, enc_id, dec_id) if d)
    ev = Stage(f"eval-{setting.name}-{tuned.name}-s{seed}", "eval",
               {"eval": recipe.eval, "model": tuned.name}, deps,
               _with_finetune(run_eval, ft_id, base.name), meta)  # fmt: skip
    return out + [ev]


def finetune_stages(recipe: Recipe) -> list:
    """The stages of every [[finetune]] of ``recipe`` (after the stages they read)."""
    stages = []
    for entry in recipe.finetunes:
        if entry.task == "detection":  # detection_stages.py
            continue
        for setting in finetune_settings(recipe, entry):
            for seed in recipe.seeds:
                stages += _stages_for(recipe, entry, setting, seed)
    return stages

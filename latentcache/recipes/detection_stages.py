"""The stages of a detection ``[[finetune]]``: chamain2021's settings on a Faster R-CNN of
pixels, through ``run_detection_finetune`` (``latentcache finetune --task detection``).

::

    [finetune-<tag>-<classifier>-s<seed>]  (the detector it starts from, if it names one)
        ─► finetune-<tag>-<ft>-s<seed>    codec.pt + detector.pt + summary.json: the eval split
                                          really compressed with the new codec, the detector on
                                          g_s of the decoded bytes: mAP, AP50, true bpp
        ─► eval-<tag>-<ft>-s<seed>        the summary as a report row (result.json)

``<tag>`` is the setting (``q2-mse``), or ``original`` for a detector of the uncompressed
images (``options.input = "original"``: mode task, once, no codec in the loop). Mode ``task``
from a new detector (no ``classifier``) is the pixel baseline on decoded images; ``codec``
and ``joint`` re-train the codec, and the row's bpp is the new codec's, from its bytes.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import fields
from pathlib import Path

from latentcache.errors import ConfigError
from latentcache.recipes.configs import codec_spec
from latentcache.recipes.finetune_stages import finetune_settings
from latentcache.recipes.spec import FinetuneEntry, Recipe, Setting
from latentcache.recipes.stage import Stage
from latentcache.store.manifest import file_sha256

__all__ = ["detection_finetune_config", "detection_finetune_stages"]

_NOT_KEY = ("out", "command", "detector")


def _tag(entry: FinetuneEntry, setting: Setting | None) -> str:
    return "original" if entry.options.get("input") == "original" else setting.name


def detection_finetune_config(
    recipe: Recipe, setting: Setting, entry: FinetuneEntry, seed: int, out: str = "",
    detector: str | None = None, command: str = "",
):  # fmt: skip
    """The DetectionFinetuneConfig of one stage: the entry's options < its mode, beta, epochs
    < the recipe's dataset, codec, eval split and this seed."""
    from latentcache.finetune.detection_run import DetectionFinetuneConfig

    given = {k: getattr(entry, k) for k in ("mode", "beta", "epochs") if getattr(entry, k)}
    if entry.gamma:
        raise ConfigError(f'finetune "{entry.name}": detection fine-tuning has no gamma term')
    opts = dict(entry.options) | given
    known = {f.name for f in fields(DetectionFinetuneConfig)}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ConfigError(
            f'finetune "{entry.name}": unknown detection options {unknown}; valid: '
            f"{sorted(known - {'dataset', 'out', 'codec', 'seed', 'command'})}"
        )
    return DetectionFinetuneConfig(
        **opts | {
            "dataset": recipe.dataset, "data_root": recipe.data_root,
            "dataset_options": recipe.dataset_options, "codec": codec_spec(recipe, setting),
            "eval_split": recipe.eval.get("split", "test"), "out": out, "detector": detector,
            "seed": seed, "command": command,
        }
    )  # fmt: skip


def _run_finetune(recipe, setting, entry, seed, start_id):
    def run(ctx) -> dict:
        from latentcache.finetune.detection_run import run_detection_finetune

        detector = str(Path(ctx.deps[start_id]["dir"]) / "run") if start_id else None
        out = ctx.dir / "run"
        if out.exists():  # a finetune run does not resume: start over
            import shutil

            shutil.rmtree(out)
        command = ctx.shared.get("command", "")
        cfg = detection_finetune_config(recipe, setting, entry, seed, str(out), detector, command)
        start = time.perf_counter()
        summary = run_detection_finetune(cfg)
        files = [out / "codec.pt", out / "detector.pt"]
        identity = hashlib.sha256("".join(map(file_sha256, files)).encode()).hexdigest()
        return {
            "identity": identity,
            "train_seconds": time.perf_counter() - start,
            "summary": summary,
            "detector_model": _detector_model(ctx, start_id, cfg),
        }

    return run


def _detector_model(ctx, start_id, cfg) -> str:
    if start_id:
        return ctx.deps[start_id]["result"]["detector_model"]
    return cfg.detector_model


_SCORES = ("map", "map_50", "map_75", "nap50")


def _run_eval(recipe: Recipe, entry: FinetuneEntry, ft_id: str, baseline: str | None):
    def run(ctx) -> dict:
        ft = ctx.deps[ft_id]["result"]
        summary = ft["summary"]
        got = summary.get("finetuned") or {}
        if not got:
            raise ConfigError(f"{ft_id} evaluated no split (the dataset has no eval split)")
        row = {
            "recipe": recipe.name, "dataset": recipe.dataset, "model": entry.name,
            "arch": ft["detector_model"], "input": entry.options.get("input", "decoded"),
            "quality": ctx.meta.get("quality"), "metric": ctx.meta.get("metric"),
            "seed": ctx.meta.get("seed"), "split": summary.get("split"),
            **{k: got.get(k) for k in _SCORES},
            "per_class_ap": got.get("per_class_ap"), "per_class_ap50": got.get("per_class_ap50"),
            "count": got.get("images"),
            "failed": got.get("failed"), "bpp": got.get("bpp_true_mean"),
            "train_seconds": ft["train_seconds"], "epochs": summary.get("epochs"),
            "shots": entry.options.get("shots"),
            "finetune": {"name": entry.name, "mode": summary.get("mode"),
                         "beta": summary.get("beta"), "epochs": summary.get("epochs")},
            "bpp_likelihood_train": summary.get("train_bpp_likelihood"),
            "baseline_model": baseline,
            "before": {k: (summary.get("frozen") or {}).get(k) for k in _SCORES},
        }  # fmt: skip
        (ctx.dir / "result.json").write_text(json.dumps(row, indent=1, sort_keys=True))
        return row | {"identity": file_sha256(ctx.dir / "result.json")}

    return run


def _stages_for(recipe: Recipe, entry: FinetuneEntry, setting: Setting, seed: int) -> list:
    tag = _tag(entry, setting)
    original = tag == "original"
    meta = {"quality": None if original else setting.quality,
            "metric": None if original else setting.metric, "seed": seed}  # fmt: skip
    start_id = None
    if entry.classifier:
        start = next(f for f in recipe.finetunes if f.name == entry.classifier)
        start_id = f"finetune-{_tag(start, setting)}-{start.name}-s{seed}"
    ft_id = f"finetune-{tag}-{entry.name}-s{seed}"
    problem, cfg = None, {}
    try:
        full = detection_finetune_config(recipe, setting, entry, seed).to_dict()
        cfg = {k: v for k, v in full.items() if k not in _NOT_KEY}
        if original:
            cfg.pop("codec")  # not in the loop
    except ConfigError as exc:
        cfg, problem = {"error": str(exc)}, str(exc)
    external = {"dataset_index_sha256": None} | ({} if original else {"codec_sha256": None})
    ft = Stage(ft_id, "finetune", cfg, (start_id,) if start_id else (),
               _run_finetune(recipe, setting, entry, seed, start_id), meta, external,
               problem)  # fmt: skip
    ev = Stage(f"eval-{tag}-{entry.name}-s{seed}", "eval",
               {"eval": recipe.eval, "model": entry.name}, (ft_id,),
               _run_eval(recipe, entry, ft_id, entry.classifier), meta)  # fmt: skip
    return [ft, ev]


def detection_finetune_stages(recipe: Recipe) -> list[Stage]:
    """The stages of every detection [[finetune]] of ``recipe``, in its order."""
    stages: list[Stage] = []
    made: set[str] = set()
    for entry in recipe.finetunes:
        if entry.task != "detection":
            continue
        if not recipe.settings:
            raise ConfigError(f'finetune "{entry.name}": the recipe has no codec qualities')
        settings = finetune_settings(recipe, entry)
        if entry.options.get("input") == "original":
            settings = settings[:1]  # once: the codec is not in the loop
        for setting in settings:
            for seed in recipe.seeds:
                pair = _stages_for(recipe, entry, setting, seed)
                missing = [d for d in pair[0].deps if d not in made]
                if missing and not pair[0].problem:
                    pair[0].problem = (
                        f'finetune "{entry.name}" starts from {missing[0]}, which this recipe '
                        f"does not make (give both entries the same quality)"
                    )
                made |= {s.id for s in pair}
                stages += pair
    return stages

"""The stage graph of a recipe, and what each stage calls (the existing ``run_*`` functions).

::

    encode-<setting> ─┬─────────────────► train-<setting>-<model>-s<seed> ─► eval-… ─┐
     (run_encode)     └► decode-<setting> ► train-… (decoded images)    ─► eval-… ─┼─► report
                         (run_decode)                                               │
    train-original-<model>-s<seed> (the source images) ───────────────► eval-… ─┘

Each stage has a resolved config (JSON), the stages it reads, and a function
``run(ctx) -> result``; :mod:`latentcache.recipes.runner` decides what runs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from latentcache.errors import ConfigError
from latentcache.recipes.spec import ModelEntry, Recipe, Setting
from latentcache.store.manifest import file_sha256

__all__ = ["Stage", "StageContext", "build_stages", "latent_train_config", "image_train_config"]

logger = logging.getLogger(__name__)

KINDS = ("encode", "decode", "train", "eval", "report")
_NOT_CONFIG = ("out", "store", "images", "command", "progress", "resume")


@dataclass
class StageContext:
    """What a stage's function sees: its folder, its dependencies' records, shared state."""

    dir: Path
    deps: dict[str, dict]  # dependency stage id -> its record (result, identity)
    resume: bool  # an unfinished run of the same key is in dir
    shared: dict  # loaded codecs, the dataset index, source bytes per image
    meta: dict = field(default_factory=dict)  # setting and seed of this stage


@dataclass
class Stage:
    id: str
    kind: str
    config: dict
    deps: tuple[str, ...]
    run: Callable[[StageContext], dict]
    meta: dict = field(default_factory=dict)
    external: dict = field(default_factory=dict)  # input identities not from stages
    problem: str | None = None  # why this stage cannot run (found before any work)


# ---------------------------------------------------------------- config mapping


def _none_if_zero(opts: dict) -> dict:
    return {k: (None if k in ("resize", "crop") and v == 0 else v) for k, v in opts.items()}


def latent_train_config(entry: ModelEntry, store: str, out: str, seed: int, resume: bool = False):
    """The TrainConfig of a latent model: the recipe's options, its preset/init/pretrained
    passed through by name, this seed. The one place a recipe becomes a TrainConfig."""
    from latentcache.train.config import TrainConfig

    supported = {f.name for f in fields(TrainConfig)}
    extra = {k: getattr(entry, k) for k in ("preset", "init", "pretrained") if getattr(entry, k)}
    unsupported = sorted(set(extra) - supported)
    if unsupported:
        named = ", ".join(f'{k} "{extra[k]}"' for k in unsupported)
        raise ConfigError(
            f'model "{entry.name}": {named} needs a latentcache whose training accepts it '
            f"(TrainConfig has no {unsupported} field)"
        )
    extra = {k: v for k, v in extra.items() if k != "preset"}
    options = {"progress": False, **_none_if_zero(entry.options), **extra}
    options |= {"store": store, "out": out, "model": entry.model, "seed": seed, "resume": resume}
    if hasattr(TrainConfig, "from_options"):  # defaults < the preset's settings < options
        return TrainConfig.from_options(options, preset=entry.preset)
    return TrainConfig.from_dict(options)


def image_train_config(entry: ModelEntry, recipe: Recipe, images: str | None, out: str, seed: int):
    """The ImageTrainConfig of a pixel baseline (decoded: ``images`` = decode folder)."""
    from latentcache.pixels.train import ImageTrainConfig

    source = "original" if entry.input == "original" else "decoded"
    if entry.preset or entry.init:
        raise ConfigError(
            f'model "{entry.name}": preset/init apply to latent models; give the image '
            "training options of a pixel baseline in its [model.options]"
        )
    options = dict(entry.options)
    if entry.pretrained is not None:
        options["model_kwargs"] = {
            **options.get("model_kwargs", {}),
            "pretrained": entry.pretrained,
        }
    return ImageTrainConfig.from_dict(
        {
            "progress": False,
            **options,
            "source": source,
            "images": images if source == "decoded" else recipe.data_root,
            "dataset": recipe.dataset if source == "original" else None,
            "dataset_options": recipe.dataset_options if source == "original" else {},
            "model": entry.model,
            "out": out,
            "seed": seed,
        }
    )


def _key_config(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in _NOT_CONFIG}


# ---------------------------------------------------------------- stage functions


def _codec_spec(recipe: Recipe, setting: Setting):
    from latentcache.codec.spec import CodecSpec

    # A checkpoint's labels come from its weights (the card never restates a typed label that
    # the weights may contradict); the setting's quality and metric then only name the stage.
    from_file = recipe.codec["source"] == "checkpoint"
    return CodecSpec(
        arch=recipe.codec["arch"],
        quality=None if from_file else setting.quality,
        metric=None if from_file else setting.metric,
        source=recipe.codec["source"],
        checkpoint=recipe.codec.get("checkpoint"),
    )


def encode_config(recipe: Recipe, setting: Setting, out: str, overwrite: bool = False):
    from latentcache.config import EncodeConfig

    opts = dict(recipe.encode)
    if "formats" in opts:
        opts["formats"] = tuple(opts["formats"])
    return EncodeConfig(
        dataset=recipe.dataset,
        out=out,
        data_root=recipe.data_root,
        dataset_options=recipe.dataset_options,
        codec=_codec_spec(recipe, setting),
        overwrite=overwrite,
        command=f"latentcache run {recipe.name}",
        **{"workers": 0, **opts},
    )


def _source_bytes(index) -> int:
    return sum(os.path.getsize(index.root / s.path) for s in index.samples)


def _store_summary(manifest: dict, index) -> dict:
    stored = max(int(manifest["totals"]["stored"]), 1)
    return {
        "bpp": {s: v["bpp_mean"] for s, v in manifest["splits"].items()},
        "images": {s: v["stored"] for s, v in manifest["splits"].items()},
        "bitstream_bytes_per_image": manifest["totals"]["bitstream_bytes"] / stored,
        "store_bytes_per_image": {
            fmt: b / stored for fmt, b in manifest["totals"]["bytes"].items()
        },
        "source_bytes_per_image": _source_bytes(index) / max(len(index.samples), 1),
        "codec": manifest["codec"],
    }


def _run_encode(recipe: Recipe, setting: Setting):
    def run(ctx: StageContext) -> dict:
        import time

        from latentcache.pipeline.encode import run_encode

        config = encode_config(recipe, setting, str(ctx.dir / "store"), overwrite=not ctx.resume)
        start = time.perf_counter()
        result = run_encode(config, ctx.shared["codecs"][setting.name])
        summary = _store_summary(result.manifest, ctx.shared["index"])
        stored = max(int(result.manifest["totals"]["stored"]), 1)
        summary["encode_ms_per_image"] = 1e3 * (time.perf_counter() - start) / stored
        summary["identity"] = file_sha256(result.path / "manifest.json")
        return summary

    return run


def _run_decode(setting: Setting, encode_id: str):
    def run(ctx: StageContext) -> dict:
        from latentcache.pixels.decode import DecodeConfig, run_decode

        store = str(Path(ctx.deps[encode_id]["dir"]) / "store")
        index = run_decode(
            DecodeConfig(store, str(ctx.dir / "images")), ctx.shared["codecs"][setting.name]
        )
        return {
            "decode_ms_per_image": index["decode_ms_per_image"],
            "images": len(index["samples"]),
            "identity": file_sha256(ctx.dir / "images" / "index.json"),
        }

    return run


def _run_train(entry: ModelEntry, recipe: Recipe, seed: int, source_id: str | None):
    def run(ctx: StageContext) -> dict:
        import time

        out = str(ctx.dir / "run")
        start = time.perf_counter()
        if entry.input == "latents":
            from latentcache.train import run_training

            store = str(Path(ctx.deps[source_id]["dir"]) / "store")
            result = run_training(latent_train_config(entry, store, out, seed, ctx.resume))
        else:
            from latentcache.pixels.train import run_image_training

            images = str(Path(ctx.deps[source_id]["dir"]) / "images") if source_id else None
            codec = ctx.deps[source_id]["result"].get("codec") if source_id else None
            config = image_train_config(entry, recipe, images, out, seed)
            result = run_image_training(config, codec)
        ckpt = Path(out) / ("best.pt" if (Path(out) / "best.pt").is_file() else "last.pt")
        return {
            "train_seconds": time.perf_counter() - start,
            "epochs": result["epochs"],
            "best_top1": result["best_top1"],
            "identity": file_sha256(ckpt),
        }

    return run


def _run_eval(recipe: Recipe, entry: ModelEntry, train_id: str, encode_id: str | None, decode_id):
    def run(ctx: StageContext) -> dict:
        import json

        opts = {"split": "test", "checkpoint": "best", "device": "auto", **recipe.eval}
        run_dir = Path(ctx.deps[train_id]["dir"]) / "run"
        kw = {k: opts[k] for k in ("checkpoint", "batch_size", "device") if k in opts}
        start = time.perf_counter()
        if entry.input == "latents":
            from latentcache.train import evaluate_run

            store = Path(ctx.deps[encode_id]["dir"]) / "store"
            got = evaluate_run(run_dir, store, opts["split"], write=False, **kw)
        else:
            from latentcache.pixels.train import evaluate_image_run

            got = evaluate_image_run(run_dir, opts["split"], **kw)
        got["eval_ms_per_image"] = 1e3 * (time.perf_counter() - start) / max(got["count"], 1)
        row = _result_row(recipe, entry, ctx, got, opts["split"], train_id, encode_id, decode_id)
        (ctx.dir / "result.json").write_text(json.dumps(row, indent=1, sort_keys=True))
        return row | {"identity": file_sha256(ctx.dir / "result.json")}

    return run


def _result_row(recipe, entry, ctx, got, split, train_id, encode_id, decode_id) -> dict:
    enc = ctx.deps[encode_id]["result"] if encode_id else {}
    train = ctx.deps[train_id]
    return {
        "recipe": recipe.name,
        "dataset": recipe.dataset,
        "model": entry.name,
        "arch": entry.model,
        "input": entry.input,
        "quality": ctx.meta.get("quality"),
        "metric": ctx.meta.get("metric"),
        "seed": ctx.meta.get("seed"),
        "split": split,
        "top1": got["top1"],
        "top5": got["top5"],
        "count": got["count"],
        "eval_ms_per_image": got["eval_ms_per_image"],  # inference, with data loading
        "bpp": enc.get("bpp", {}).get(split),
        "train_seconds": train["result"]["train_seconds"],
        "epochs": train["result"]["epochs"],
        "encode_ms_per_image": enc.get("encode_ms_per_image"),
        "decode_ms_per_image": ctx.deps[decode_id]["result"]["decode_ms_per_image"]
        if decode_id
        else None,
        "bitstream_bytes_per_image": enc.get("bitstream_bytes_per_image"),
        "store_bytes_per_image": enc.get("store_bytes_per_image"),
        "source_bytes_per_image": enc.get("source_bytes_per_image")
        or ctx.shared.get("source_bytes_per_image"),
    }


def _run_report(recipe: Recipe, run_dir: Path):
    def run(ctx: StageContext) -> dict:
        from latentcache.report.rate_accuracy import build_report

        out = build_report([run_dir], ctx.dir)
        return {"identity": file_sha256(out / "report.md"), "report": str(out / "report.md")}

    return run


# ---------------------------------------------------------------- the graph


def _train_eval(
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
        _key_config(cfg),
        (source_id,) if source_id else (),
        _run_train(entry, recipe, seed, source_id),
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
        _run_eval(recipe, entry, train_id, encode_id, decode_id),
        meta,
    )
    return [train, ev]


def build_stages(recipe: Recipe, run_dir: Path) -> list[Stage]:
    """Every stage of ``recipe`` in a topological order (dependencies first)."""
    stages: list[Stage] = []
    evals: list[str] = []
    for setting in recipe.settings:
        enc_id = f"encode-{setting.name}"
        enc_cfg = encode_config(recipe, setting, "").content_dict()
        stages.append(
            Stage(
                enc_id,
                "encode",
                enc_cfg,
                (),
                _run_encode(recipe, setting),
                {"quality": setting.quality, "metric": setting.metric},
                {"codec_sha256": None, "dataset_index_sha256": None},
            )
        )
        dec_id = None
        if any(m.input == "decoded" for m in recipe.models):
            dec_id = f"decode-{setting.name}"
            stages.append(
                Stage(dec_id, "decode", recipe.decode, (enc_id,), _run_decode(setting, enc_id))
            )
        for entry in recipe.models:
            if entry.input == "original":
                continue
            source = enc_id if entry.input == "latents" else dec_id
            for seed in recipe.seeds:
                pair = _train_eval(
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
                pair = _train_eval(recipe, entry, "original", seed, None, None, None)
                stages += pair
                evals.append(pair[1].id)
    report_cfg = {"papers": [p.__dict__ for p in recipe.papers], "name": recipe.name}
    stages.append(Stage("report", "report", report_cfg, tuple(evals), _run_report(recipe, run_dir)))
    return stages

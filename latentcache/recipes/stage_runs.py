"""What each stage of a recipe calls: the existing ``run_*`` functions, wrapped as
``run(ctx) -> result`` (encode, decode, train, eval, report)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from latentcache.recipes.configs import encode_config, image_train_config, latent_train_config
from latentcache.recipes.spec import ModelEntry, Recipe, Setting
from latentcache.recipes.stage import StageContext
from latentcache.report.rate_accuracy import SCORES
from latentcache.store.manifest import file_sha256

__all__ = [
    "decode_stage_run",
    "encode_stage_run",
    "eval_stage_run",
    "report_stage_run",
    "train_stage_run",
]


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


def encode_stage_run(recipe: Recipe, setting: Setting):
    def run(ctx: StageContext) -> dict:
        import time

        from latentcache.pipeline.encode import run_encode

        out, command = str(ctx.dir / "store"), ctx.shared.get("command", "")
        config = encode_config(recipe, setting, out, overwrite=not ctx.resume, command=command)
        start = time.perf_counter()
        result = run_encode(config, ctx.shared["codecs"][setting.name])
        summary = _store_summary(result.manifest, ctx.shared["index"])
        stored = max(int(result.manifest["totals"]["stored"]), 1)
        summary["encode_ms_per_image"] = 1e3 * (time.perf_counter() - start) / stored
        summary["identity"] = file_sha256(result.path / "manifest.json")
        return summary

    return run


def decode_stage_run(setting: Setting, encode_id: str):
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


def train_stage_run(entry: ModelEntry, recipe: Recipe, seed: int, source_id: str | None):
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
            "best_top1": result.get("best_top1"),  # classification runs
            "identity": file_sha256(ckpt),
        }

    return run


def eval_stage_run(
    recipe: Recipe, entry: ModelEntry, train_id: str, encode_id: str | None, decode_id
):
    def run(ctx: StageContext) -> dict:
        import json

        opts = {"split": "test", "checkpoint": "best", "device": "auto", **recipe.eval}
        run_dir = Path(ctx.deps[train_id]["dir"]) / "run"
        kw = {k: opts[k] for k in ("checkpoint", "batch_size", "device") if k in opts}
        start = time.perf_counter()
        if entry.input == "latents":
            from latentcache.train import evaluate_run

            store = Path(ctx.deps[encode_id]["dir"]) / "store"
            pictures = {"pictures": opts["pictures"]} if "pictures" in opts else {}
            got = evaluate_run(
                run_dir, store, opts["split"], write=False, pictures_dir=ctx.dir, **kw, **pictures
            )
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
        "task": got.get("task"),  # the latent runs' (its report section)
        **{k: got[k] for k in SCORES if k in got},  # the task's scores (top1/top5, miou, ...)
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


def report_stage_run(recipe: Recipe, run_dir: Path):
    def run(ctx: StageContext) -> dict:
        from latentcache.report.rate_accuracy import build_report

        out = build_report([run_dir], ctx.dir)
        return {"identity": file_sha256(out / "report.md"), "report": str(out / "report.md")}

    return run

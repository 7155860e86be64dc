"""Turn the shards' commit records into the store's manifest (the dataset card).

::

    commit records ─► shards (rows, count, files: bytes + sha256), splits (counts, bpp, stats)
    zarr/ metadata ─► zarr_metadata: every group and array zarr.json (bytes + sha256)

Every file of the store is listed: each shard's files in its commit record (written by its
task), the Zarr metadata here (written before the tasks, hashed once they are all done).
"""

from __future__ import annotations

import hashlib
import math
import statistics
from datetime import datetime, timezone
from pathlib import Path

from latentcache.store.manifest import file_entry, library_versions
from latentcache.store.scales import scale_floor
from latentcache.store.wds_store import WDS_DIR
from latentcache.store.zarr_store import ZARR_DIR, metadata_keys
from latentcache.tasks import get_task

__all__ = [
    "build_manifest",
    "model_inputs",
    "row_order",
    "split_stats",
    "task_entry",
    "zarr_metadata",
]

_SHARD_KEYS = ("split", "index", "rows", "indexed", "count", "files", "encoder")


def task_entry(index) -> dict:
    """The manifest's ``task``: what the dataset's labels are; a task with keys of its own
    (schema v2: segmentation's ``ignore_index``, detection's ``category_ids``) adds them."""
    return get_task(index.task).manifest_entry(index.options)


def model_inputs(codec) -> list[str]:
    """The manifest's ``inputs``: the latent arrays a model receives, in order (``scales_repr``
    says how ``scales_hat`` is stored; a z_hat store's readers compute it with h_s): what the
    codec's decoder uses, y_hat alone for the factorized prior, + means_hat for codecs with
    means (codec.spec.KINDS)."""
    return list(codec.inputs)


def row_order(config, tasks, split: str) -> dict:
    """How the split's rows were ordered: the order, its seed, the sha256 of its key order.

    ``keys_sha256`` hashes the planned keys joined by newlines, in row order (a failed sample
    leaves its row as a hole at the end of its shard; its key still counts here).
    """
    keys = [s.key for t in tasks if t.split == split for s in t.samples]
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    return {"order": config.order, "seed": config.order_seed, "keys_sha256": digest}


def split_stats(records: list[dict]) -> dict:
    """Mean/std of y_hat and of log(max(scales_hat, scale_floor)) over every stored element."""
    keys = ("n", "y_sum", "y_sq", "s_sum", "s_sq", "m_sum", "m_sq")
    tot = {k: sum(r["stats"].get(k, 0.0) for r in records) for k in keys}
    if not tot["n"]:
        return {}

    def mean_std(s, sq):
        mean = s / tot["n"]
        return mean, math.sqrt(max(sq / tot["n"] - mean * mean, 0.0))

    y_mean, y_std = mean_std(tot["y_sum"], tot["y_sq"])
    s_mean, s_std = mean_std(tot["s_sum"], tot["s_sq"])
    out = {
        "y_hat_mean": y_mean,
        "y_hat_std": y_std,
        "log_scales_mean": s_mean,
        "log_scales_std": s_std,
    }
    if any("m_sum" in r["stats"] for r in records) and "means_hat" in records[0].get("inputs", []):
        out["means_hat_mean"], out["means_hat_std"] = mean_std(tot["m_sum"], tot["m_sq"])
    return out


def _split_entry(records: list[dict], latent_hw, image_hw=None) -> dict:
    bpp = [b for r in records for b in r["bpp"]]
    est = [b for r in records for b in r["bpp_estimate"]]
    shapes = sorted({tuple(s) for r in records for s in r["latent_shapes"]})
    return {
        "indexed": sum(r["indexed"] for r in records),
        "stored": sum(r["count"] for r in records),
        "failed": sum(len(r["failures"]) for r in records),
        "rows": max((r["rows"][1] for r in records), default=0),
        "bpp_mean": statistics.fmean(bpp) if bpp else None,
        "bpp_median": statistics.median(bpp) if bpp else None,
        "bpp_estimate_mean": statistics.fmean(est) if est else None,
        "bitstream_bytes": sum(r["bitstream_bytes"] for r in records),
        "latent_shape": list(shapes[0]) if len(shapes) == 1 else None,
        "latent_shapes": [list(s) for s in shapes],
        "zarr_latent_shape": latent_hw,
        "image_size_max": [
            max((r.get("image_size_max", [0, 0])[i] for r in records), default=0) for i in (0, 1)
        ],
        **({"zarr_image_size": image_hw} if image_hw else {}),
        "stats": split_stats(records),
    }


def _format_bytes(shards: list[dict]) -> dict:
    out: dict[str, int] = {}
    for sh in shards:
        for fmt, files in sh["files"].items():
            out[fmt] = out.get(fmt, 0) + sum(f["bytes"] for f in files)
    return out


def zarr_metadata(store_path: Path, splits) -> list[dict]:
    """File entries of the Zarr layout's group and array ``zarr.json`` files."""
    import zarr

    root = zarr.open_group(store_path / ZARR_DIR, mode="r", zarr_format=3)
    return [file_entry(store_path / rel, store_path) for rel in metadata_keys(root, splits)]


def build_manifest(
    config, index, codec, tasks, committed: dict, latent_hw: dict, image_hw: dict | None = None
) -> dict:
    missing = [(t.split, t.index) for t in tasks if (t.split, t.index) not in committed]
    if missing:
        raise RuntimeError(
            f"refusing to write the manifest: {len(missing)} shards are not committed ({missing[:3]}...)"
        )
    records = [committed[(t.split, t.index)] for t in tasks]
    shards = [{k: r[k] for k in _SHARD_KEYS} for r in records]
    by_split = {s: [r for r in records if r["split"] == s] for s in index.split_names}
    splits = {
        s: _split_entry(rs, latent_hw.get(s), (image_hw or {}).get(s))
        | {"row_order": row_order(config, tasks, s)}
        for s, rs in by_split.items()
    }
    failures = [f for r in records for f in r["failures"]]
    stored = sum(r["count"] for r in records)
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": config.command,
        "config": config.to_dict(),
        "versions": library_versions(),
        "entropy_coder": _entropy_coder(),
        "codec": codec.identity(),
        "latents": latents_card(codec),
        "scale_table": _scale_table(codec.model),
        "scale_floor": scale_floor(codec.model),
        "dataset": {
            "name": index.name,
            "root": str(index.root),
            "options": index.options,
            "index_sha256": index.sha256(),
            "classes": list(index.classes),
            "num_classes": len(index.classes),
        },
        "task": task_entry(index),
        "inputs": model_inputs(codec),
        "formats": sorted(config.formats),
        "layout": {
            "zarr": ZARR_DIR if "zarr" in config.formats else None,
            "webdataset": WDS_DIR if "webdataset" in config.formats else None,
        },
        "zarr_metadata": (
            zarr_metadata(Path(config.out), index.split_names) if "zarr" in config.formats else []
        ),
        "scales_repr": config.scales_repr,
        "shard_size": config.shard_size,
        "splits": splits,
        "shards": shards,
        "failures": failures,
        "totals": {
            "indexed": len(index.samples),
            "stored": stored,
            "failed": len(failures),
            "bitstream_bytes": sum(r["bitstream_bytes"] for r in records),
            "bytes": _format_bytes(shards),
        },
    }


def _scale_table(model) -> list[float]:
    """The σ̂ table the coder indexes (empty for the factorized prior, which has none)."""
    gc = getattr(model, "gaussian_conditional", None)
    return [] if gc is None else [float(v) for v in gc.scale_table.tolist()]


def latents_card(codec) -> dict:
    """What a reader of this store gets, and how it rebuilds the decoder's y_hat bit-exact."""
    kind = codec.kind
    card = {"kind": kind, "y_hat": "int16 symbols: the integers the entropy coder coded"}
    if kind == "factorized":
        from latentcache.codec.factorized import channel_medians

        card["decoded_y_hat"] = "y_hat + channel_medians[c] (float32, per channel c)"
        card["channel_medians"] = [float(v) for v in channel_medians(codec.model)]
    elif kind == "hyperprior":
        card["decoded_y_hat"] = "y_hat (float32 cast): the symbols are the decoder's y_hat"
    else:
        card["decoded_y_hat"] = "y_hat + means_hat (float32 add)"
        card["means_hat"] = "float32, the Gaussian means the decoder used at each position" + (
            " (from its context model, decoded serially)" if kind == "autoregressive" else ""
        )
    return card


def _entropy_coder() -> str:
    import compressai

    return compressai.get_entropy_coder()

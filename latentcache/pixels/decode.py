"""``run_decode``: a latent store's bitstreams decoded once into an image store (the pixel
baseline's input), with stock CompressAI ``decompress`` — the one place ``g_s`` runs.

::

    store (Zarr: y_string, z_string, z_shape, image_size per row)
      └► codec.model.decompress([[y], [z]], z_shape)["x_hat"]   (g_s; timed)
      └► unpad (centered, as encode padded) ─► clamp, round ─► PNG
      └► <out>/<split>/<key>.png  +  <out>/index.json (task, classes, samples, decode time,
                                                       codec, source manifest sha256) written last
    a dense task's per-image targets (segmentation: the stored mask, cut to the image's size)
      └► the task's target file beside the image, <out>/<split>/<key>.mask.png, named by
         the sample's ``target`` as a dataset names its mask file (task.read_targets)
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from latentcache.errors import CodecMismatchError, ConfigError
from latentcache.store.manifest import file_sha256

__all__ = ["DecodeConfig", "run_decode", "read_image_index", "INDEX_NAME"]

logger = logging.getLogger(__name__)

INDEX_NAME = "index.json"
_BITSTREAM = ["key", "label", "y_string", "z_string", "z_shape", "image_size"]


@dataclass(frozen=True)
class DecodeConfig:
    """Decode ``store`` into PNG files under ``out``; ``splits`` None: every split."""

    store: str
    out: str
    splits: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _decode_one(model, y: bytes, z: bytes, z_shape, size) -> np.ndarray:
    """(H, W, 3) uint8 of one bitstream, unpadded as CompressAI's eval_model does."""
    import torch
    from compressai.ops import compute_padding

    h, w = (int(v) for v in size)
    _, unpad = compute_padding(h, w, min_div=64)
    with torch.no_grad():
        x_hat = model.decompress([[bytes(y)], [bytes(z)]], [int(v) for v in z_shape])["x_hat"]
    x_hat = torch.nn.functional.pad(x_hat, unpad).clamp_(0, 1)  # (1, 3, H, W)
    return (x_hat[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def _target_names(store) -> list[str]:
    """The store's per-image target arrays (a dense task's, at the image's size, padded to
    the split's largest), written beside each decoded image; none for ragged targets."""
    task = store.task_unit
    if any(n in task.ragged_targets for n in task.target_names):
        return []
    return list(task.target_names)


def _write_targets(task, rows: dict, i: int, names: list[str], out: Path, stem: str) -> dict:
    """Row ``i``'s targets as the task's target file (``<stem>.<suffix>``, what its dataset
    readers read); returns the sample's ``target`` (that file's path) where there is one."""
    if not names:
        return {}
    h, w = (int(v) for v in rows["image_size"][i])
    file = task.target_file({n: rows[n][i][..., :h, :w] for n in names})
    if file is None:
        return {}
    suffix, data = file
    (out / f"{stem}.{suffix}").write_bytes(data)
    return {"target": f"{stem}.{suffix}"}


def _decode_split(store, split: str, codec, out: Path) -> tuple[list[dict], float]:
    from PIL import Image

    from latentcache.store.zarr_store import read_rows

    zs = store.zarr_split(split)
    task, targets = store.task_unit, _target_names(store)
    samples, seconds = [], 0.0
    for start, stop in zs.blocks():
        rows = read_rows(zs.group, start, stop, _BITSTREAM + targets)
        for i, key in enumerate(rows["key"]):
            t0 = time.perf_counter()
            rgb = _decode_one(
                codec.model,
                rows["y_string"][i],
                rows["z_string"][i],
                rows["z_shape"][i],
                rows["image_size"][i],
            )
            seconds += time.perf_counter() - t0
            rel = f"{split}/{key}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(out / rel)
            sample = {"key": str(key), "path": rel, "label": int(rows["label"][i]), "split": split}
            sample |= _write_targets(task, rows, i, targets, out, f"{split}/{key}")
            samples.append(sample)
    return samples, seconds


def run_decode(config: DecodeConfig, codec=None) -> dict:
    """Decode every stored bitstream once; returns the image index (also written as JSON).

    ``codec``: the loaded codec (default: loaded from the store's codec record); its weights
    must be those that made the store.
    """
    from latentcache.store import open_store

    store = open_store(config.store)
    if "zarr" not in store.formats:
        raise ConfigError(f"decode reads the Zarr layout; store {config.store} has {store.formats}")
    if codec is None:
        from latentcache.codec.load import load_codec
        from latentcache.codec.spec import CodecSpec

        codec = load_codec(CodecSpec.from_dict(store.codec))
    if codec.weights_sha256 != store.codec.get("weights_sha256"):
        raise CodecMismatchError(
            f"store {config.store} was made by weights {store.codec.get('weights_sha256', '?')[:12]}, "
            f"the codec given has {codec.weights_sha256[:12]}"
        )
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = list(config.splits or store.splits)
    samples, seconds = [], 0.0
    for split in splits:
        got, t = _decode_split(store, split, codec, out)
        samples += got
        seconds += t
        logger.info(
            "decoded %d %s images (%.1f ms each)", len(got), split, 1e3 * t / max(len(got), 1)
        )
    index = {
        "format": "latentcache-images",
        "version": 1,
        "task": store.task_unit.name,
        "classes": store.classes,
        "samples": samples,
        "decode_seconds": seconds,
        "decode_ms_per_image": 1e3 * seconds / max(len(samples), 1),
        "codec": store.codec,
        "store_manifest_sha256": file_sha256(Path(config.store) / "manifest.json"),
        "torch_threads": _threads(),
    }
    tmp = out / f".{INDEX_NAME}.tmp"
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
    os.replace(tmp, out / INDEX_NAME)
    return index


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def read_image_index(root: str | os.PathLike) -> dict:
    """The index a decode wrote (classes, samples with relative paths, splits)."""
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {INDEX_NAME} in {root}: not a decoded image store")
    index = json.loads(path.read_text())
    if index.get("format") != "latentcache-images":
        raise ConfigError(f"{path} is not a latentcache image index")
    return index

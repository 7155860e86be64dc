"""The pictures of an evaluation, for any task whose report section draws them.

::

    write_pictures (``latentcache eval``, a recipe's eval stage):
      the first n samples of the split, through the same loader, transform and model as
      the scores (whole latents, no crop, no flip) ─► task.forward ─► section.pictures
      └► with_pixels: the original (the dataset index the manifest names), the image
         decoded from the stored bitstreams (g_s, when the codec is at hand) and the
         sample's true bpp (Zarr layout), where they can be had
      └► section.sheet ─► pictures_<split>.png
    sheet_rows (segmentation): the first n rows of a Zarr split, predicted row by row by a
      caller's function

A row is a frozen dataclass with ``key``, ``image``, ``decoded`` and ``bpp`` fields and an
``hw`` property (the image's (H, W)); this module fills the three pixel fields.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_PICTURES",
    "picture_name",
    "sheet_rows",
    "store_codec",
    "with_pixels",
    "write_pictures",
]

logger = logging.getLogger(__name__)

DEFAULT_PICTURES = 4  # samples on an eval picture sheet


def picture_name(split: str) -> str:
    return f"pictures_{split}.png"


def eval_pictures(
    task, store, spec, resize, prepare, model, amp, classes, out: Path, n: int, codec=None
) -> Path | None:
    """``out/pictures_<split>.png`` of a run's evaluation (``spec``: its StreamSpec), through
    a loader of its own (no workers); ``codec``: None loads the store's where it can."""
    from latentcache.train.data import build_loader

    if task.report_section().pictures is None or n <= 0:
        return None
    spec = dataclasses.replace(spec, batch_size=max(1, min(n, spec.batch_size)))
    codec = codec or store_codec(store, spec.codec_checkpoint)
    path = Path(out) / picture_name(spec.split)
    batches = build_loader(spec, 0, resize)
    return write_pictures(
        task, store, spec.split, batches, prepare, model, amp, classes, path, n, codec
    )


def write_pictures(
    task,
    store,
    split: str,
    batches,
    prepare,
    model,
    amp,
    classes: list[str],
    path: str | Path,
    n: int = DEFAULT_PICTURES,
    codec=None,
) -> Path | None:
    """The first ``n`` samples of ``batches`` (a deterministic loader of ``split``) on
    ``task``'s picture sheet at ``path``; None when the task has no pictures."""
    import torch

    section = task.report_section()
    if section.pictures is None or n <= 0:
        return None
    rows: list = []
    model.eval()
    with torch.no_grad():
        for batch in batches:
            xs, targets = prepare(batch, False, None)
            with amp():
                outputs = task.forward(model, xs, targets, False)
            rows += section.pictures(batch, outputs, targets)
            if len(rows) >= n:
                break
    if not rows:
        return None
    rows = with_pixels(store, split, rows[:n], codec)
    title = f"{store.manifest['dataset']['name']} {split}: {task.name} from latents"
    return section.sheet(rows, tuple(classes), Path(path), title)


# --- the pixels of a sample -----------------------------------------------------------------


def _originals(store) -> dict[str, Path]:
    """key -> image file, through the dataset index the manifest names (with the recorded
    options its adapter takes); {} when the dataset is not at hand."""
    import inspect

    from latentcache.datasets import build_index, get_dataset
    from latentcache.errors import LatentCacheError

    dataset = store.manifest["dataset"]
    try:
        takes = inspect.signature(get_dataset(dataset["name"]).index).parameters
        options = {k: v for k, v in dataset.get("options", {}).items() if k in takes}
        index = build_index(dataset["name"], dataset.get("root"), **options)
    except (LatentCacheError, OSError, TypeError, KeyError) as exc:
        logger.info("pictures without originals: %s", exc)
        return {}
    return {s.key: index.root / s.path for s in index.samples}


def _original(path: Path | None, hw: tuple[int, int]) -> np.ndarray | None:
    from latentcache.errors import SampleError
    from latentcache.images import load_image

    if path is None or not path.is_file():
        return None
    try:
        rgb = load_image(path.read_bytes()).rgb
    except SampleError:
        return None
    return rgb if rgb.shape[:2] == tuple(hw) else None


def _stored(store, split: str, keys: set[str], codec) -> dict[str, tuple]:
    """key -> (decoded (H, W, 3) uint8 or None, bpp) of the Zarr rows holding ``keys``;
    {} for a store without that layout."""
    from latentcache.errors import LatentCacheError
    from latentcache.pixels.decode import _decode_one

    try:
        zs = store.zarr_split(split)
        all_keys = [str(k) for k in zs.read_arrays(0, len(zs), ["key"])["key"]]
    except (LatentCacheError, OSError, KeyError, ValueError) as exc:
        logger.info("pictures without decoded images: %s", exc)
        return {}
    out = {}
    for i, key in enumerate(all_keys):
        if key not in keys:
            continue
        row = {k: v[0] for k, v in zs.read(i, i + 1, bitstreams=codec is not None).items()}
        decoded = None
        if codec is not None:
            hw = tuple(int(v) for v in row["image_size"])
            decoded = _decode_one(codec.model, row["y_string"], row["z_string"], row["z_shape"], hw)
        out[key] = (decoded, float(row["bpp"]))
    return out


def with_pixels(store, split: str, rows: list, codec=None) -> list:
    """``rows`` with their original, decoded image (``codec``: the store's) and bpp."""
    originals = _originals(store)
    stored = _stored(store, split, {r.key for r in rows}, codec)
    out = []
    for r in rows:
        decoded, bpp = stored.get(r.key, (None, None))
        image = _original(originals.get(r.key), r.hw)
        out.append(dataclasses.replace(r, image=image, decoded=decoded, bpp=bpp))
    return out


def sheet_rows(
    store,
    split: str,
    predict: Callable[[dict], np.ndarray],
    codec=None,
    n: int = 4,
) -> list:
    """The first ``n`` rows of ``split``: original, decoded (with ``codec``), truth and
    ``predict(row)``; ``row`` is the store's row (key, y_hat and scales_hat cropped to the
    latent shape, image_size, canvas_offset, mask, ...) and ``predict`` returns (H, W) uint8."""
    from latentcache.pixels.decode import _decode_one
    from latentcache.report.segmentation import SheetRow

    zs = store.zarr_split(split)
    got = zs.read(0, min(n, len(zs)), bitstreams=codec is not None)
    originals = _originals(store)
    rows = []
    for i, key in enumerate(got["key"][:n]):
        row = {k: v[i] for k, v in got.items()}
        lh, lw = (int(v) for v in row["latent_shape"])
        row["y_hat"], row["scales_hat"] = (
            row["y_hat"][..., :lh, :lw],
            row["scales_hat"][..., :lh, :lw],
        )
        h, w = (int(v) for v in row["image_size"])
        decoded = None
        if codec is not None:
            decoded = _decode_one(
                codec.model, row["y_string"], row["z_string"], row["z_shape"], (h, w)
            )
        rows.append(
            SheetRow(
                str(key),
                _original(originals.get(str(key)), (h, w)),
                decoded,
                np.ascontiguousarray(row["mask"][:h, :w]),
                np.asarray(predict(row), dtype=np.uint8),
                float(row["bpp"]),
            )
        )
    return rows


def store_codec(store, checkpoint: str | None = None):
    """The store's codec for decoded pictures, or None (one log line) when it cannot be
    had here (weights not cached offline, a codec trained in memory, ...)."""
    from latentcache.codec.load import load_store_codec
    from latentcache.errors import LatentCacheError

    try:
        return load_store_codec(store.codec, checkpoint)
    except (LatentCacheError, OSError, KeyError) as exc:
        logger.info("pictures without decoded images: %s", exc)
        return None

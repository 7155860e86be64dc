"""Segmentation pictures in the manner of torfason et al. (2018), Fig. 5.

::

    store split ─► sheet_rows(store, split, predict, codec, n): the first n rows
        truth     the stored mask cut to the image (image_size)
        decoded   g_s of the stored bitstreams, unpadded (the codec: optional)
        image     the original file, through the dataset index the manifest names (optional)
        predict   row ─► (H, W) uint8, given by the caller (the model of a training run)
    SheetRow(key, image, decoded, truth, prediction)      one sample, arrays at image size
        image, decoded  (H, W, 3) uint8   the original and the codec's reconstruction (g_s)
        truth           (H, W) uint8      the stored mask (255 = ignore)
        prediction      (H, W) uint8      the model's argmax from the latents
      └► picture_sheet(rows, classes, path): one row per sample, columns
         image | decoded | ground truth | prediction from latents, masks in VOC's colours,
         pixels ignored by the ground truth drawn in VOC's cream; a legend of the classes shown

The colours are PASCAL VOC's (:func:`latentcache.datasets.masks.voc_palette`), so VOC
pictures look as they do in the papers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentcache.datasets.masks import IGNORE_INDEX, voc_palette

__all__ = ["SheetRow", "colorize", "picture_sheet", "sheet_rows"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SheetRow:
    key: str
    image: np.ndarray | None  # (H, W, 3) uint8, None when the original is not at hand
    decoded: np.ndarray | None  # (H, W, 3) uint8, None when the codec is not at hand
    truth: np.ndarray  # (H, W) uint8
    prediction: np.ndarray  # (H, W) uint8
    bpp: float | None = None

    def __post_init__(self) -> None:
        hw = self.truth.shape
        shapes = [self.prediction.shape]
        shapes += [a.shape[:2] for a in (self.image, self.decoded) if a is not None]
        if any(tuple(s) != tuple(hw) for s in shapes):
            raise ValueError(f"sample {self.key}: pictures of sizes {shapes}, its mask is {hw}")


def colorize(mask: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 in VOC's colours (255: cream)."""
    return voc_palette()[np.asarray(mask, dtype=np.uint8)]


def _legend(ax, classes: tuple[str, ...], shown: set[int]) -> None:
    from matplotlib.patches import Patch

    colours = voc_palette() / 255.0
    handles = [Patch(color=colours[i], label=classes[i]) for i in sorted(shown) if i < len(classes)]
    if IGNORE_INDEX in shown:
        handles.append(Patch(color=colours[IGNORE_INDEX], label="ignore (255)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7)


def picture_sheet(
    rows: list[SheetRow], classes: tuple[str, ...], path: str | Path, title: str = ""
) -> Path:
    """Write the sheet of ``rows`` to ``path`` (PNG); see the module docstring."""
    from latentcache.report.training import _pyplot

    if not rows:
        raise ValueError("a picture sheet needs at least one sample")
    plt = _pyplot()
    heads = ["image", "decoded", "ground truth", "prediction from latents"]
    aspect = rows[0].truth.shape[1] / rows[0].truth.shape[0]
    fig, axes = plt.subplots(
        len(rows), 4, figsize=(4 * 2.4 * aspect + 1.6, 2.4 * len(rows) + 0.4), squeeze=False
    )
    shown: set[int] = set()
    for r, row in enumerate(rows):
        blank = np.full((*row.truth.shape, 3), 255, dtype=np.uint8)
        pictures = [blank if a is None else a for a in (row.image, row.decoded)]
        pictures += [colorize(row.truth), colorize(row.prediction)]
        shown |= set(np.unique(row.truth).tolist()) | set(np.unique(row.prediction).tolist())
        for c, (ax, picture) in enumerate(zip(axes[r], pictures, strict=True)):
            ax.imshow(picture, interpolation="nearest")
            if c < 2 and (row.image, row.decoded)[c] is None:
                what = ("original not at hand", "not decoded")[c]
                ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heads[c], fontsize=9)
        rate = f"\n{row.bpp:.3f} bpp" if row.bpp is not None else ""
        axes[r][0].set_ylabel(row.key + rate, fontsize=7)
    _legend(axes[0][3], classes, shown)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


# --- rows from a store --------------------------------------------------------------------


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
    except (LatentCacheError, OSError, TypeError) as exc:
        logger.info("picture sheet without originals: %s", exc)
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
    return rgb if rgb.shape[:2] == hw else None


def sheet_rows(
    store,
    split: str,
    predict: Callable[[dict], np.ndarray],
    codec=None,
    n: int = 4,
) -> list[SheetRow]:
    """The first ``n`` rows of ``split``: original, decoded (with ``codec``), truth and
    ``predict(row)``; ``row`` is the store's row (key, y_hat and scales_hat cropped to the
    latent shape, image_size, canvas_offset, mask, ...) and ``predict`` returns (H, W) uint8."""
    from latentcache.pixels.decode import _decode_one

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

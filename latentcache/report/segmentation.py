"""Segmentation pictures in the manner of torfason et al. (2018), Fig. 5.

::

    store split ─► sheet_rows(store, split, predict, codec, n) (report/pictures.py): the
        first n rows
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
    evaluated batch ─► eval_rows(batch, logits, mask canvas): the rows of ``latentcache eval``'s
        pictures_<split>.png (SECTION, the task's report section; report/sections.py)

The colours are PASCAL VOC's (:func:`latentcache.datasets.masks.voc_palette`), so VOC
pictures look as they do in the papers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentcache.datasets.masks import IGNORE_INDEX, voc_palette
from latentcache.report.sections import ReportSection

__all__ = ["SheetRow", "SECTION", "colorize", "eval_rows", "picture_sheet"]


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

    @property
    def hw(self) -> tuple[int, int]:
        return tuple(self.truth.shape[:2])


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


# --- rows from an evaluation ---------------------------------------------------------------


def eval_rows(batch: dict, logits, targets) -> list[SheetRow]:
    """Per sample of an evaluated batch: the truth and the argmax of the logits (upsampled
    bilinearly to the canvas, as they are scored), both cut to the image through its
    ``canvas_offset``; no pixels yet (:func:`latentcache.report.sections.with_pixels`)."""
    import torch

    from latentcache.tasks.seg_metric import upsample

    pred = upsample(logits.float(), targets.shape[-2:]).argmax(1).to("cpu", torch.uint8)
    truth = targets.cpu()
    rows = []
    for i, key in enumerate(batch["key"]):
        (top, left), (h, w) = (
            (int(v) for v in batch["canvas_offset"][i]),
            (int(v) for v in batch["image_size"][i]),
        )
        rows.append(
            SheetRow(
                str(key),
                None,
                None,
                truth[i, top : top + h, left : left + w].numpy(),
                pred[i, top : top + h, left : left + w].numpy(),
            )
        )
    return rows


SECTION = ReportSection(
    "segmentation",
    "Segmentation",
    ("miou", "pixel_accuracy"),
    "miou_vs_bpp.png",
    pictures=eval_rows,
    sheet=picture_sheet,
)

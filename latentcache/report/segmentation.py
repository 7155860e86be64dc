"""Segmentation pictures in the manner of torfason et al. (2018), Fig. 5.

::

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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentcache.datasets.masks import IGNORE_INDEX, voc_palette

__all__ = ["SheetRow", "colorize", "picture_sheet"]


@dataclass(frozen=True)
class SheetRow:
    key: str
    image: np.ndarray  # (H, W, 3) uint8
    decoded: np.ndarray | None  # (H, W, 3) uint8, None when the codec is not at hand
    truth: np.ndarray  # (H, W) uint8
    prediction: np.ndarray  # (H, W) uint8
    bpp: float | None = None

    def __post_init__(self) -> None:
        hw = self.truth.shape
        shapes = [self.image.shape[:2], self.prediction.shape]
        if self.decoded is not None:
            shapes.append(self.decoded.shape[:2])
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
    aspect = rows[0].image.shape[1] / rows[0].image.shape[0]
    fig, axes = plt.subplots(
        len(rows), 4, figsize=(4 * 2.4 * aspect + 1.6, 2.4 * len(rows) + 0.4), squeeze=False
    )
    shown: set[int] = set()
    for r, row in enumerate(rows):
        blank = np.full_like(row.image, 255)
        pictures = [row.image, blank if row.decoded is None else row.decoded]
        pictures += [colorize(row.truth), colorize(row.prediction)]
        shown |= set(np.unique(row.truth).tolist()) | set(np.unique(row.prediction).tolist())
        for c, (ax, picture) in enumerate(zip(axes[r], pictures, strict=True)):
            ax.imshow(picture, interpolation="nearest")
            if c == 1 and row.decoded is None:
                ax.text(0.5, 0.5, "not decoded", ha="center", va="center", transform=ax.transAxes)
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

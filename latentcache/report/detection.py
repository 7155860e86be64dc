"""Detection pictures: the detector's boxes, and the ground truth's, drawn on the image.

::

    evaluated batch ─► eval_rows(batch, detections, targets): per sample, in image pixels xyxy
        truth        boxes, labels (contiguous ids) of the store's targets
        detections   boxes, labels, scores of the detector on the latents
    BoxRow(key, image, decoded, truth_boxes, truth_labels, boxes, labels, scores, size, bpp)
      └► draw_boxes(rgb, boxes, names, colours): torchvision's draw_bounding_boxes on a copy
      └► box_sheet(rows, classes, path, title): one row per sample, columns
           ground truth       its boxes on the original image (else the decoded one)
           prediction         the ground truth thin and white, the detections with a score of
                              at least MIN_SCORE (the MAX_BOXES best) in their class's colour,
                              "name score" above each, on the decoded image (else the original)
         a legend of the classes drawn

A class keeps one colour on every sheet (:func:`class_colour`). Without any image at hand the
boxes are drawn on grey.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentcache.report.sections import ReportSection

__all__ = [
    "BoxRow",
    "MAX_BOXES",
    "MIN_SCORE",
    "SECTION",
    "box_sheet",
    "class_colour",
    "draw_boxes",
    "eval_rows",
]

MIN_SCORE = 0.3  # detections drawn: at least this score
MAX_BOXES = 30  # and at most this many, the best
TRUTH = (255, 255, 255)
GREY = 128


@dataclass(frozen=True)
class BoxRow:
    key: str
    image: np.ndarray | None  # (H, W, 3) uint8: the original, None when not at hand
    decoded: np.ndarray | None  # (H, W, 3) uint8: g_s of the stored bitstreams
    truth_boxes: np.ndarray  # (N, 4) float xyxy, image pixels
    truth_labels: np.ndarray  # (N,) int
    boxes: np.ndarray  # (M, 4) float xyxy: the detections
    labels: np.ndarray  # (M,) int
    scores: np.ndarray  # (M,) float
    size: tuple[int, int]  # the image's (H, W)
    bpp: float | None = None

    def __post_init__(self) -> None:
        shapes = [a.shape[:2] for a in (self.image, self.decoded) if a is not None]
        if any(tuple(s) != tuple(self.size) for s in shapes):
            raise ValueError(
                f"sample {self.key}: pictures of sizes {shapes}, its image is {self.size}"
            )
        for name, boxes, n in (
            ("truth", self.truth_boxes, len(self.truth_labels)),
            ("detections", self.boxes, len(self.labels)),
        ):
            if boxes.shape != (n, 4):
                raise ValueError(f"sample {self.key}: {name} boxes {boxes.shape}, {n} labels")
        if len(self.scores) != len(self.labels):
            raise ValueError(
                f"sample {self.key}: {len(self.scores)} scores, {len(self.labels)} labels"
            )

    @property
    def hw(self) -> tuple[int, int]:
        return tuple(self.size)

    def shown(self) -> np.ndarray:
        """Indices of the detections drawn: score >= MIN_SCORE, the MAX_BOXES best."""
        order = np.argsort(-self.scores, kind="stable")
        return order[self.scores[order] >= MIN_SCORE][:MAX_BOXES]


def class_colour(label: int) -> tuple[int, int, int]:
    """A bright colour per class id, far from its neighbours' (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((int(label) * 0.618033988749895) % 1.0, 0.9, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(
    rgb: np.ndarray,
    boxes: np.ndarray,
    names: list[str] | None,
    colours: list[tuple[int, int, int]],
    width: int | None = None,
) -> np.ndarray:
    """``boxes`` (N, 4) xyxy drawn on a copy of ``rgb`` (H, W, 3) uint8, each in its colour,
    with its name above it (None: no text); ``width``: the line's, in pixels (default: about
    1 % of the image's shorter side)."""
    import torch
    from torchvision.utils import draw_bounding_boxes

    if len(boxes) == 0:
        return rgb.copy()
    h, w = rgb.shape[:2]
    width = width or max(1, round(min(h, w) / 100))
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    out = draw_bounding_boxes(
        image,
        torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4),
        labels=names,
        colors=list(colours),
        width=width,
    )
    return out.permute(1, 2, 0).numpy()


def _name(classes: tuple[str, ...], label: int) -> str:
    return classes[label] if 0 <= label < len(classes) else str(label)


def _panels(row: BoxRow, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    grey = np.full((*row.size, 3), GREY, dtype=np.uint8)
    first = next((a for a in (row.image, row.decoded) if a is not None), grey)
    second = next((a for a in (row.decoded, row.image) if a is not None), grey)
    t_labels = [int(v) for v in row.truth_labels]
    truth = draw_boxes(
        first,
        row.truth_boxes,
        [_name(classes, v) for v in t_labels],
        [class_colour(v) for v in t_labels],
    )
    keep = row.shown()
    labels = [int(v) for v in row.labels[keep]]
    names = [f"{_name(classes, v)} {s:.2f}" for v, s in zip(labels, row.scores[keep], strict=True)]
    predicted = draw_boxes(second, row.truth_boxes, None, [TRUTH] * len(t_labels), width=1)
    predicted = draw_boxes(predicted, row.boxes[keep], names, [class_colour(v) for v in labels])
    return truth, predicted


def box_sheet(
    rows: list[BoxRow], classes: tuple[str, ...], path: str | Path, title: str = ""
) -> Path:
    """Write the sheet of ``rows`` to ``path`` (PNG); see the module docstring."""
    from matplotlib.patches import Patch

    from latentcache.report.training import _pyplot

    if not rows:
        raise ValueError("a picture sheet needs at least one sample")
    plt = _pyplot()
    aspect = rows[0].size[1] / rows[0].size[0]
    fig, axes = plt.subplots(
        len(rows), 2, figsize=(2 * 3.2 * aspect + 1.8, 3.2 * len(rows) + 0.5), squeeze=False
    )
    heads = ["ground truth", f"prediction from latents (score ≥ {MIN_SCORE:g}; truth in white)"]
    drawn: set[int] = set()
    for r, row in enumerate(rows):
        drawn |= {int(v) for v in row.truth_labels} | {int(v) for v in row.labels[row.shown()]}
        for c, picture in enumerate(_panels(row, classes)):
            ax = axes[r][c]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heads[c], fontsize=9)
        base = (
            "original" if row.image is not None else "decoded" if row.decoded is not None else "–"
        )
        rate = f"\n{row.bpp:.3f} bpp" if row.bpp is not None else ""
        axes[r][0].set_ylabel(f"{row.key}{rate}\n(on {base})", fontsize=7)
    handles = [
        Patch(color=np.array(class_colour(v)) / 255.0, label=_name(classes, v))
        for v in sorted(drawn)
    ]
    if handles:
        axes[0][1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def eval_rows(batch: dict, detections: list[dict], targets: list[dict]) -> list[BoxRow]:
    """Per sample of an evaluated batch: its truth and the detector's boxes (image pixels);
    no pixels yet (:func:`latentcache.report.pictures.with_pixels`)."""

    def numpy(t, shape=(-1,), dtype=np.float32):
        return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype).reshape(
            shape
        )

    rows = []
    for key, det, t in zip(batch["key"], detections, targets, strict=True):
        rows.append(
            BoxRow(
                str(key),
                None,
                None,
                numpy(t["boxes"], (-1, 4)),
                numpy(t["labels"], dtype=np.int64),
                numpy(det["boxes"], (-1, 4)),
                numpy(det["labels"], dtype=np.int64),
                numpy(det["scores"]),
                tuple(int(v) for v in t["image_size"]),
            )
        )
    return rows


SECTION = ReportSection(
    "detection",
    "Detection",
    ("map", "map_50"),
    "map_vs_bpp.png",
    pictures=eval_rows,
    sheet=box_sheet,
)

"""Detection targets: one image's boxes, read from its annotation file and validated.

::

    Sample.target ──► read_boxes(root, target) ──► RawBoxes (as the file states them)
      "Annotations/000005.xml"               VOC XML    (reader registered by voc_det)
      "annotations/x.json#397133"            COCO JSON, image id after '#' (reader: coco)
                                  │
    decoded image (H, W) ─────────┴─► validate_boxes(raw, (H, W), category_ids)
                                        ──► BoxTargets: boxes (N, 4) float32 pixel xyxy on the
                                            unpadded image, labels (N,) int64 contiguous ids,
                                            iscrowd (N,) bool, dropped (one line per box left out)
                                        | SampleError(one-line reason): the sample is recorded
                                            as a failure, as an undecodable image is

What :func:`validate_boxes` refuses (the whole sample fails, its reason recorded): a size the
annotation declares that differs from the decoded image's (EXIF orientation the annotation
ignored, a wrong file); a non-finite coordinate; a negative width or height; a box further
than ``tolerance`` pixels outside the image; a category the dataset does not list; more than
:data:`MAX_BOXES` boxes. What it repairs and records in ``dropped``: boxes with zero width or
height (COCO has a few) are left out. Boxes that overhang the image by at most ``tolerance``
pixels are clipped to it.

``iscrowd`` is COCO's crowd flag, or VOC's *difficult* flag: both mark boxes that evaluation
ignores (COCO evaluation treats a crowd box as "ignore"; so the VOC difficult flag is carried
in the same column, as detectron2 and mmdetection do).

Readers of annotation formats register with :func:`register_box_reader` by file suffix; the
COCO reader keeps one compact table per annotation file and process (the JSON is parsed once).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentcache.errors import SampleError

__all__ = [
    "MAX_BOXES",
    "RawBoxes",
    "BoxTargets",
    "BOX_READERS",
    "register_box_reader",
    "read_boxes",
    "validate_boxes",
    "load_boxes",
    "empty_boxes",
]

MAX_BOXES = 10_000  # per image; COCO's largest image has 93
EDGE_TOLERANCE = 1.0  # pixels a box may overhang the image before it is refused


@dataclass(frozen=True)
class RawBoxes:
    """Boxes as an annotation file states them, before any check."""

    xyxy: np.ndarray  # (N, 4) float64, pixels, x1 y1 x2 y2 on the unpadded image
    category_ids: np.ndarray  # (N,) int64, the dataset's original ids
    iscrowd: np.ndarray  # (N,) bool
    image_size: tuple[int, int] | None = None  # (H, W) the file declares, if any
    category_space: tuple[int, ...] | None = None  # the format's own category ids, in order

    @classmethod
    def from_lists(cls, xyxy, category_ids, iscrowd, image_size=None, space=None) -> RawBoxes:
        n = len(category_ids)
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(n, 4)
        ids = np.asarray(category_ids, dtype=np.int64).reshape(n)
        crowd = np.asarray(iscrowd, dtype=bool).reshape(n)
        return cls(boxes, ids, crowd, image_size, tuple(space) if space is not None else None)


@dataclass(frozen=True)
class BoxTargets:
    """One image's validated boxes (see the module docstring)."""

    boxes: np.ndarray  # (N, 4) float32 pixel xyxy on the unpadded image
    labels: np.ndarray  # (N,) int64, contiguous ids: index into the dataset's classes
    iscrowd: np.ndarray  # (N,) bool: COCO crowd or VOC difficult
    dropped: tuple[str, ...] = field(default=())  # one line per box left out

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to_dict(self) -> dict:
        """JSON-ready: ``{"boxes": [[x1, y1, x2, y2], ...], "labels": [...], "iscrowd": [...]}``."""
        out = {
            "boxes": self.boxes.astype(float).tolist(),
            "labels": self.labels.tolist(),
            "iscrowd": self.iscrowd.astype(int).tolist(),
        }
        if self.dropped:
            out["dropped"] = list(self.dropped)
        return out

    @classmethod
    def from_dict(cls, d: dict, image_size: tuple[int, int], num_classes: int) -> BoxTargets:
        """Parse :meth:`to_dict`'s output from another team's store: every check again."""
        if not isinstance(d, dict) or not {"boxes", "labels", "iscrowd"} <= set(d):
            raise SampleError("box record must be an object with boxes, labels and iscrowd")
        labels = d["labels"]
        if not isinstance(labels, list) or len(labels) > MAX_BOXES:
            raise SampleError(f"box record: labels must be a list of at most {MAX_BOXES}")
        try:
            raw = RawBoxes.from_lists(d["boxes"], labels, d["iscrowd"])
        except (TypeError, ValueError) as exc:
            raise SampleError(f"box record is malformed: {exc}") from None
        targets = validate_boxes(raw, image_size, range(num_classes), tolerance=0.0)
        if targets.dropped:
            raise SampleError(f"box record holds a degenerate box: {targets.dropped[0]}")
        return BoxTargets(
            targets.boxes, targets.labels, targets.iscrowd, tuple(d.get("dropped", ()))
        )


def empty_boxes() -> BoxTargets:
    return BoxTargets(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool))


# --- readers by annotation format --------------------------------------------------------

BOX_READERS: dict[str, Callable[[Path, str], RawBoxes]] = {}


def register_box_reader(suffix: str) -> Callable:
    """Register ``reader(path, fragment) -> RawBoxes`` for annotation files ending in ``suffix``."""

    def decorator(fn: Callable[[Path, str], RawBoxes]) -> Callable[[Path, str], RawBoxes]:
        BOX_READERS[suffix] = fn
        return fn

    return decorator


def read_boxes(root: Path, target: str) -> RawBoxes:
    """The raw boxes ``target`` points at (``path`` or ``path#fragment``, under ``root``)."""
    # the readers are registered: latentcache.datasets (imported before this module) imports
    # every adapter, coco_json and voc_det among them
    rel, _, fragment = target.partition("#")
    suffix = Path(rel).suffix.lower()
    if suffix not in BOX_READERS:
        raise SampleError(
            f"annotation {rel!r}: no box reader for {suffix or 'files without a suffix'} "
            f"(readers: {sorted(BOX_READERS)})"
        )
    path = Path(root) / rel
    if not path.is_file():
        raise SampleError(f"annotation file {rel} is missing")
    return BOX_READERS[suffix](path, fragment)


# --- validation ---------------------------------------------------------------------------


def _check_size(raw: RawBoxes, image_size: tuple[int, int]) -> None:
    if raw.image_size is not None and tuple(raw.image_size) != tuple(image_size):
        (ah, aw), (h, w) = raw.image_size, image_size
        raise SampleError(
            f"annotation declares a {aw}x{ah} image but the image is {w}x{h} "
            "(EXIF orientation or a different file?)"
        )


def _check_box(i: int, box: np.ndarray, w: int, h: int, tolerance: float) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise SampleError(f"box {i} has a non-finite coordinate ({x1}, {y1}, {x2}, {y2})")
    if x2 < x1 or y2 < y1:
        raise SampleError(f"box {i} has a negative size ({x1}, {y1}, {x2}, {y2})")
    if x1 < -tolerance or y1 < -tolerance or x2 > w + tolerance or y2 > h + tolerance:
        raise SampleError(
            f"box {i} ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {w}x{h} image"
        )


class _Identity:
    """``range(n)`` as a mapping of ids to themselves, without building a dict of ``n``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __contains__(self, c: int) -> bool:
        return 0 <= c < self.n

    def __getitem__(self, c: int) -> int:
        return c

    def __len__(self) -> int:
        return self.n


def _contiguous(category_ids: Sequence[int]):
    if isinstance(category_ids, range) and category_ids.start == 0 and category_ids.step == 1:
        return _Identity(len(category_ids))
    return {int(c): i for i, c in enumerate(category_ids)}


def validate_boxes(
    raw: RawBoxes,
    image_size: tuple[int, int],
    category_ids: Sequence[int],
    tolerance: float = EDGE_TOLERANCE,
) -> BoxTargets:
    """Check ``raw`` against the decoded image's ``(H, W)`` and the dataset's original
    ``category_ids`` (contiguous id = position in it); see the module docstring."""
    n = int(raw.category_ids.shape[0])
    if n > MAX_BOXES:
        raise SampleError(f"{n} boxes, more than the limit of {MAX_BOXES} per image")
    if raw.xyxy.shape != (n, 4):
        raise SampleError(f"boxes have shape {raw.xyxy.shape}, expected ({n}, 4)")
    _check_size(raw, image_size)
    h, w = image_size
    contiguous = _contiguous(category_ids)
    for i in range(n):
        _check_box(i, raw.xyxy[i], w, h, tolerance)
        if int(raw.category_ids[i]) not in contiguous:
            raise SampleError(
                f"box {i} has category {int(raw.category_ids[i])}, not one of the dataset's "
                f"{len(contiguous)} categories"
            )
    boxes = raw.xyxy.copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    dropped = tuple(
        f"box {i} ({', '.join(f'{v:g}' for v in raw.xyxy[i])}) has zero width or height"
        for i in np.flatnonzero(~keep)
    )
    labels = np.array([contiguous[int(c)] for c in raw.category_ids[keep]], dtype=np.int64)
    return BoxTargets(
        boxes[keep].astype(np.float32), labels.reshape(-1), raw.iscrowd[keep].copy(), dropped
    )


def load_boxes(
    root: Path,
    target: str | None,
    image_size: tuple[int, int],
    category_ids: Sequence[int] | None = None,
) -> BoxTargets:
    """Read and validate one sample's boxes; a sample without a target has none.

    ``category_ids``: the dataset's original ids (contiguous id = position); None takes the
    annotation format's own list (the COCO file's categories by id, VOC's 20 classes), which
    is what the adapters put in ``index.options["category_ids"]``.
    """
    if target is None:
        return empty_boxes()
    raw = read_boxes(root, target)
    ids = category_ids if category_ids is not None else raw.category_space
    if ids is None:
        raise SampleError(f"annotation {target!r} names no category list; pass category_ids")
    return validate_boxes(raw, image_size, ids)

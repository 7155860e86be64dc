"""Box targets in the two store layouts, each read back as hostile input.

::

    Zarr (ragged through offsets, as the bitstreams are; spec-only data types):
      box_offsets      (R, 2)  int64    (start, stop) of row r in its shard's box arrays
      boxes/<shard>    (N, 4)  float32  pixel xyxy on the unpadded image
      box_labels/<shard> (N,)  int32    contiguous category ids
      box_iscrowd/<shard> (N,) uint8    COCO crowd / VOC difficult
    WebDataset: <key>.boxes.json   {"boxes": [[x1, y1, x2, y2], ...], "labels": [...],
                                    "iscrowd": [...]}  (plain webdataset decodes .json)

:func:`pack_boxes` turns one shard's rows into the Zarr columns; :func:`unpack_boxes` checks
dtypes, shapes and offsets before slicing and every box again (inside its image, a known
category, positive size) before anything is returned.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from latentcache.datasets.boxes import MAX_BOXES, BoxTargets, empty_boxes
from latentcache.errors import SampleError

__all__ = [
    "BOXES_MEMBER",
    "MAX_MEMBER_BYTES",
    "pack_boxes",
    "unpack_boxes",
    "boxes_member",
    "parse_boxes_member",
]

BOXES_MEMBER = "boxes.json"
MAX_MEMBER_BYTES = 4 << 20  # 10,000 boxes as JSON take about 1 MB
_COLUMNS = {"boxes": (np.float32, 2), "box_labels": (np.int32, 1), "box_iscrowd": (np.uint8, 1)}


def pack_boxes(rows: Sequence[BoxTargets | None]) -> dict[str, np.ndarray]:
    """The Zarr columns of one shard's rows (None: a hole, no boxes)."""
    offsets = np.zeros((len(rows), 2), dtype=np.int64)
    pos = 0
    for i, t in enumerate(rows):
        n = len(t) if t is not None else 0
        offsets[i] = (pos, pos + n)
        pos += n
    kept = [t for t in rows if t is not None and len(t)]
    if not kept:
        kept = [empty_boxes()]
    return {
        "box_offsets": offsets,
        "boxes": np.concatenate([t.boxes for t in kept]).astype(np.float32).reshape(-1, 4),
        "box_labels": np.concatenate([t.labels for t in kept]).astype(np.int32),
        "box_iscrowd": np.concatenate([t.iscrowd for t in kept]).astype(np.uint8),
    }


def _check_columns(columns: dict[str, np.ndarray], rows: int) -> int:
    offsets = columns["box_offsets"]
    if offsets.dtype != np.int64 or offsets.shape != (rows, 2):
        raise SampleError(
            f"box_offsets: {offsets.dtype} {offsets.shape}, expected int64 ({rows}, 2)"
        )
    n = None
    for name, (dtype, ndim) in _COLUMNS.items():
        a = columns[name]
        if a.dtype != dtype or a.ndim != ndim or (ndim == 2 and a.shape[1] != 4):
            raise SampleError(f"{name}: {a.dtype} {a.shape}, expected {np.dtype(dtype)}")
        if n is not None and a.shape[0] != n:
            raise SampleError(f"box columns disagree in length ({a.shape[0]} vs {n})")
        n = a.shape[0]
    return int(n)


def unpack_boxes(
    columns: dict[str, np.ndarray], image_sizes: Sequence[tuple[int, int]], num_classes: int
) -> list[BoxTargets]:
    """Rows of :func:`pack_boxes`' columns, checked (SampleError naming the bad row)."""
    n = _check_columns(columns, len(image_sizes))
    out = []
    for r, (start, stop) in enumerate(columns["box_offsets"].tolist()):
        if not 0 <= start <= stop <= n or stop - start > MAX_BOXES:
            raise SampleError(f"row {r}: box offsets {start}:{stop} outside the {n} boxes")
        record = {
            "boxes": columns["boxes"][start:stop].astype(float).tolist(),
            "labels": columns["box_labels"][start:stop].tolist(),
            "iscrowd": columns["box_iscrowd"][start:stop].tolist(),
        }
        try:
            out.append(BoxTargets.from_dict(record, tuple(image_sizes[r]), num_classes))
        except SampleError as exc:
            raise SampleError(f"row {r}: {exc}") from None
    return out


def boxes_member(t: BoxTargets) -> bytes:
    """The WebDataset member of one sample's boxes."""
    return json.dumps(t.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def parse_boxes_member(
    data: bytes | dict, image_size: tuple[int, int], num_classes: int
) -> BoxTargets:
    """A ``.boxes.json`` member (raw bytes, or what webdataset's JSON decoder made of it)."""
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_MEMBER_BYTES:
            raise SampleError(f"{BOXES_MEMBER}: {len(data)} bytes, over {MAX_MEMBER_BYTES}")
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SampleError(f"{BOXES_MEMBER}: not JSON ({exc})") from None
    return BoxTargets.from_dict(data, image_size, num_classes)

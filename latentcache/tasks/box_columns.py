"""The WebDataset member of a sample's boxes, read back as hostile input::

    <key>.boxes.json   {"boxes": [[x1, y1, x2, y2], ...], "labels": [...], "iscrowd": [...]}
                       (plain webdataset's JSON decoder reads it)

Parsing bounds the member's size and checks every box again (inside its image, a known
category, finite, positive size). The Zarr layout keeps the same boxes ragged through
offsets (``latentcache/store/zarr_ragged.py``).
"""

from __future__ import annotations

import json

from latentcache.datasets.boxes import BoxTargets
from latentcache.errors import SampleError

__all__ = ["BOXES_MEMBER", "MAX_MEMBER_BYTES", "boxes_member", "parse_boxes_member"]

BOXES_MEMBER = "boxes.json"
MAX_MEMBER_BYTES = 4 << 20  # 10,000 boxes as JSON take about 1 MB


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

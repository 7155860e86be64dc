"""COCO-format annotation files: listing their images, and reading one image's boxes.

::

    annotations/instances_val2017.json ──► read_coco_listing ──► CocoListing: categories
        {"images": [{id, file_name, width, height}],                  (by id: contiguous order),
         "annotations": [{image_id, category_id, bbox: [x, y, w, h],   images (id, file_name),
                          iscrowd}],                                    boxes per image
         "categories": [{id, name}]}
                  │
    Sample.target "annotations/instances_val2017.json#397133"
                  └──► read_coco_boxes(path, "397133") ──► RawBoxes (xyxy = x, y, x + w, y + h)

The file is parsed once per process and kept as a compact table (numpy arrays per image; the
polygons are dropped), so encoding workers do not re-read it per sample. Images without
annotations are listed (COCO keeps them for evaluation) and have no boxes. Categories are
ordered by their original id; the contiguous id is the position in that order (COCO-2017:
80 categories with ids 1..90).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentcache.datasets.boxes import RawBoxes, register_box_reader
from latentcache.errors import ConfigError, DatasetNotFoundError, SampleError

__all__ = ["CocoListing", "read_coco_listing", "read_coco_boxes"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CocoListing:
    """What one annotation file holds, in a form the adapters and readers share."""

    category_ids: tuple[int, ...]  # original ids, ascending
    category_names: tuple[str, ...]  # parallel to category_ids
    images: dict[int, tuple[str, tuple[int, int]]]  # id -> (file_name, (H, W))
    boxes: dict[int, RawBoxes | str]  # id -> boxes, or why they cannot be read
    annotations: int  # number of annotation entries


def _categories(data: dict, path: Path) -> tuple[tuple[int, ...], tuple[str, ...]]:
    try:
        cats = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: malformed categories ({exc!r})") from None
    ids = [c for c, _ in cats]
    if not cats or len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: categories are empty or repeat an id")
    return tuple(ids), tuple(n for _, n in cats)


def _images(data: dict, path: Path) -> dict[int, tuple[str, tuple[int, int]]]:
    images = {}
    for entry in data.get("images", []):
        try:
            images[int(entry["id"])] = (
                str(entry["file_name"]),
                (int(entry["height"]), int(entry["width"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: malformed image entry {entry!r:.80} ({exc!r})") from None
    return images


def _group(annotations: list, images: dict, space: tuple[int, ...]) -> dict[int, RawBoxes | str]:
    rows: dict[int, list] = {}
    bad: dict[int, str] = {}
    for n, a in enumerate(annotations):
        try:
            image_id = int(a["image_id"])
            x, y, w, h = (float(v) for v in a["bbox"])
            row = ([x, y, x + w, y + h], int(a["category_id"]), bool(a.get("iscrowd", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            image_id = a.get("image_id") if isinstance(a, dict) else None
            if isinstance(image_id, int):
                bad[image_id] = f"annotation {n} is malformed ({exc!r})"
            continue
        rows.setdefault(image_id, []).append(row)
    table: dict[int, RawBoxes | str] = dict(bad)
    for image_id, r in rows.items():
        if image_id in bad or image_id not in images:
            continue
        size = images[image_id][1]
        table[image_id] = RawBoxes.from_lists(
            [x[0] for x in r], [x[1] for x in r], [x[2] for x in r], size, space
        )
    return table


def _load(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetNotFoundError(f"COCO annotation file {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations", []), list):
        raise ConfigError(f"{path}: not a COCO annotation file (images, annotations, categories)")
    return data


@functools.lru_cache(maxsize=4)
def _cached(path: str, _mtime_ns: int, _size: int) -> CocoListing:
    p = Path(path)
    logger.info("reading COCO annotations %s", p)
    data = _load(p)
    ids, names = _categories(data, p)
    images = _images(data, p)
    boxes = _group(data.get("annotations", []), images, ids)
    return CocoListing(ids, names, images, boxes, len(data.get("annotations", [])))


def read_coco_listing(path: Path) -> CocoListing:
    """The parsed annotation file (cached per process while the file is unchanged)."""
    path = Path(path).resolve()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DatasetNotFoundError(f"COCO annotation file {path} is missing") from None
    return _cached(str(path), st.st_mtime_ns, st.st_size)


@register_box_reader(".json")
def read_coco_boxes(path: Path, fragment: str) -> RawBoxes:
    """The boxes of image id ``fragment`` in the COCO annotation file ``path``."""
    try:
        listing = read_coco_listing(path)
    except (ConfigError, DatasetNotFoundError) as exc:
        raise SampleError(str(exc)) from None
    if not fragment.isdigit() or int(fragment) not in listing.images:
        raise SampleError(f"{path.name} has no image with id {fragment!r}")
    image_id = int(fragment)
    found = listing.boxes.get(image_id)
    if isinstance(found, str):
        raise SampleError(f"{path.name} image {image_id}: {found}")
    if found is None:
        size = listing.images[image_id][1]
        return RawBoxes.from_lists(np.zeros((0, 4)), [], [], size, listing.category_ids)
    return found

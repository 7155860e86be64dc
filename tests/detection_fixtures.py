"""Tiny real detection datasets for the tests: crops of scikit-image's CC0 photos saved as
JPEG, with a COCO annotation file or VOC XML files describing boxes at known places."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# COCO-style categories with gaps in the ids, listed out of order
CATEGORIES = [
    {"id": 7, "name": "cup", "supercategory": "object"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "cat", "supercategory": "animal"},
]


def photos() -> list[np.ndarray]:
    """Odd-sized crops of real photos."""
    from skimage import data

    return [data.astronaut()[:173, :221], data.coffee()[:141, :187], data.chelsea()[:127, :190]]


def save_jpeg(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="JPEG", quality=90)
    return path


def coco_json(images: list[tuple[int, str, np.ndarray]], annotations: list[dict]) -> dict:
    return {
        "images": [
            {"id": i, "file_name": name, "height": a.shape[0], "width": a.shape[1]}
            for i, name, a in images
        ],
        "annotations": [{"id": n + 1, **a} for n, a in enumerate(annotations)],
        "categories": CATEGORIES,
    }


def write_coco_tree(root: Path, names=("train2017", "val2017"), ann_name="instances_{}.json"):
    """Two splits: 2 train images, 1 validate image without annotations; boxes as xywh."""
    a, b, c = photos()
    train = [(11, "000000000011.jpg", a), (12, "000000000012.jpg", b)]
    val = [(21, "000000000021.jpg", c)]
    train_anns = [
        {"image_id": 11, "category_id": 1, "bbox": [10.0, 20.0, 50.0, 80.0], "iscrowd": 0},
        {"image_id": 11, "category_id": 3, "bbox": [100.5, 30.0, 40.0, 40.0], "iscrowd": 1},
        {"image_id": 12, "category_id": 7, "bbox": [60.0, 40.0, 70.0, 60.0], "iscrowd": 0},
    ]
    for folder, imgs, anns in ((names[0], train, train_anns), (names[1], val, [])):
        for _, name, rgb in imgs:
            save_jpeg(root / folder / name, rgb)
        ann = root / "annotations" / ann_name.format(folder)
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text(json.dumps(coco_json(imgs, anns)))
    return root


def voc_xml(size: tuple[int, int], objects: list[tuple[str, tuple, int]]) -> str:
    """``objects``: (name, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult)."""
    h, w = size
    body = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return (
        f"<annotation><filename>x.jpg</filename><size><width>{w}</width><height>{h}</height>"
        f"<depth>3</depth></size>{body}</annotation>"
    )


VOC_OBJECTS = {
    ("2007", "000005"): [("person", (11, 21, 60, 100), 0), ("cat", (101, 31, 140, 70), 1)],
    ("2007", "000007"): [("cup", (1, 1, 5, 5), 0)],  # not a VOC class: fails at encode
    ("2007", "000009"): [("dog", (61, 41, 130, 100), 0)],
    ("2012", "2008_000002"): [("car", (5, 6, 50, 60), 0)],
}
VOC_SETS = {("2007", "trainval"): ["000005", "000007"], ("2007", "test"): ["000009"]}
VOC_SETS[("2012", "trainval")] = ["2008_000002"]


def write_voc_tree(root: Path) -> Path:
    imgs = iter(photos() * 2)
    for (year, image_id), objects in VOC_OBJECTS.items():
        rgb = next(imgs)
        base = root / "VOCdevkit" / f"VOC{year}"
        save_jpeg(base / "JPEGImages" / f"{image_id}.jpg", rgb)
        xml = base / "Annotations" / f"{image_id}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(voc_xml(rgb.shape[:2], objects))
    for (year, name), ids in VOC_SETS.items():
        lst = root / "VOCdevkit" / f"VOC{year}" / "ImageSets" / "Main" / f"{name}.txt"
        lst.parent.mkdir(parents=True, exist_ok=True)
        lst.write_text("".join(f"{i}\n" for i in ids))
    return root

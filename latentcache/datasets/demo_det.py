"""The ``demo-det`` dataset: objects cut from CC0 photos pasted on photo backgrounds, exact boxes.

::

    skimage.data.chelsea() / coffee() / astronaut()   CC0 / public domain RGB photos: the
      │ object crops: the cat's head, the cup on its  objects "cat", "cup", "shuttle"
      │ saucer, the shuttle model (each shifted by up to 8 px, sometimes mirrored)
    skimage.data.hubble_deep_field()                  public domain RGB photo  ┐ backgrounds,
    skimage.data.grass() / gravel() / brick()         CC0 grey textures        ┘ tinted per image
      │ every background cut in row bands: [0, H-240) train, [H-240, H-120) validate,
      │ [H-120, H) test
      ▼
    one 120×184 image = a background crop + 1 to 3 objects, each resized (nearest pixel, integer
    arithmetic) to a planned size with its longer side 44..88 px, pasted whole at a planned place;
    objects do not overlap, so every box is exactly its object's rectangle
      ▼
    <root>/annotations/{train,validate,test}.json   COCO format (bbox = [x, y, w, h] in pixels)
    <root>/{train,validate,test}/<key>.png          RGB PNG
    train 192 / validate 48 / test 48 ─► 8×12 latents at /16 (the canvas pads to 128×192)

The layout is the ``cocofolder`` one, so that adapter reads the files as well. No background
pixel of one split is in another; the three objects are the same photos in every split (the
task is to find known objects at new places, sizes and backgrounds). The plan of every image
and the sha256 of its pixels live in ``data_manifests/demo-det/index.json``, written by
``python -m latentcache.datasets.demo_det`` from a seeded generator; :func:`prepare` renders the
plan, checks every hash and renames the folder into place: ``--dataset demo-det`` needs no
download.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from latentcache.datasets.base import DatasetIndex, register_dataset
from latentcache.datasets.coco import index_coco_files
from latentcache.datasets.demo import pixels_sha256, read_plan, render_once
from latentcache.datasets.demo_seg import dump_manifest
from latentcache.datasets.imagefolder import manifest_dir
from latentcache.errors import DatasetNotFoundError, StoreCorruptError

__all__ = [
    "CLASSES",
    "COUNTS",
    "OBJECTS",
    "SIZE",
    "build_manifest",
    "coco_annotations",
    "manifest_path",
    "prepare",
    "render",
    "index",
]


CLASSES = ("cat", "cup", "shuttle")  # COCO category ids 1, 2, 3
# class -> (source photo, top, bottom, left, right): the object's rectangle in that photo
OBJECTS = {
    "cat": ("chelsea", 8, 292, 36, 404),
    "cup": ("coffee", 12, 392, 72, 484),
    "shuttle": ("astronaut", 8, 288, 352, 472),
}
JITTER = 8  # the crop moves by up to this many source pixels
BACKGROUNDS = ("hubble_deep_field", "grass", "gravel", "brick")
SIZE = (120, 184)  # (H, W): not a multiple of 16 or 64, so the codec's canvas is padded
COUNTS = {"train": 192, "validate": 48, "test": 48}
LONG_SIDE = (44, 88)  # an object's longer side in pixels, inclusive
SEED = 2025
MANIFEST_VERSION = 1


def source(name: str) -> np.ndarray:
    """``skimage.data.<name>()``: (H, W, 3) uint8 photos, (H, W) uint8 grey textures."""
    from skimage import data

    img = np.asarray(getattr(data, name)())
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise DatasetNotFoundError(f"skimage.data.{name}() is {img.shape} {img.dtype}")
    return img[..., :3] if img.ndim == 3 else img


def _band(split: str, height: int) -> tuple[int, int]:
    h = SIZE[0]
    return {"train": (0, height - 2 * h), "validate": (height - 2 * h, height - h)}.get(
        split, (height - h, height)
    )


# --- the plan (made once, committed) ----------------------------------------------------


def object_size(cls: int, long_side: int) -> tuple[int, int]:
    """(h, w) of an object of class ``cls`` (0-based) whose longer side is ``long_side``."""
    _, top, bottom, left, right = OBJECTS[CLASSES[cls]]
    ch, cw = bottom - top, right - left
    if ch >= cw:
        return long_side, (long_side * cw + ch // 2) // ch
    return (long_side * ch + cw // 2) // cw, long_side


def _overlaps(a: dict, b: dict, gap: int = 2) -> bool:
    return not (
        a["x"] + a["w"] + gap <= b["x"]
        or b["x"] + b["w"] + gap <= a["x"]
        or a["y"] + a["h"] + gap <= b["y"]
        or b["y"] + b["h"] + gap <= a["y"]
    )


def _plan_objects(rng: np.random.Generator) -> list[dict]:
    h, w = SIZE
    placed: list[dict] = []
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(0, len(CLASSES)))
        for _try in range(50):
            oh, ow = object_size(cls, int(rng.integers(LONG_SIDE[0], LONG_SIDE[1] + 1)))
            obj = {
                "cls": cls,
                "y": int(rng.integers(0, h - oh + 1)),
                "x": int(rng.integers(0, w - ow + 1)),
                "h": oh,
                "w": ow,
                "dy": int(rng.integers(-JITTER, JITTER + 1)),
                "dx": int(rng.integers(-JITTER, JITTER + 1)),
                "flip": int(rng.integers(0, 2)),
            }
            if not any(_overlaps(obj, other) for other in placed):
                placed.append(obj)
                break
    return placed


def _plan_image(rng: np.random.Generator, split: str, i: int, shapes: dict) -> dict:
    bg = BACKGROUNDS[i % len(BACKGROUNDS)]
    top, end = _band(split, shapes[bg][0])
    return {
        "key": f"{split}/{split}_{i:03d}",
        "split": split,
        "background": bg,
        "by": int(rng.integers(top, end - SIZE[0] + 1)),
        "bx": int(rng.integers(0, shapes[bg][1] - SIZE[1] + 1)),
        "tint": [int(t) for t in rng.integers(600, 1001, size=3)],  # per mille, per channel
        "objects": _plan_objects(rng),
    }


def _sources() -> dict[str, np.ndarray]:
    names = sorted(set(BACKGROUNDS) | {o[0] for o in OBJECTS.values()})
    return {n: source(n) for n in names}


def build_manifest() -> dict:
    """The committed plan: sources, objects and every image with its pixel hash."""
    sources = _sources()
    shapes = {n: a.shape[:2] for n, a in sources.items()}
    rng = np.random.default_rng(SEED)
    images = [_plan_image(rng, split, i, shapes) for split, n in COUNTS.items() for i in range(n)]
    for item in images:
        item["image_sha256"] = pixels_sha256(render(item, sources))
    return {
        "format": "latentcache-demo-det-dataset",
        "version": MANIFEST_VERSION,
        "classes": list(CLASSES),
        "objects": {c: list(v) for c, v in OBJECTS.items()},
        "size": list(SIZE),
        "seed": SEED,
        "sources": {
            n: {"shape": list(a.shape), "pixels_sha256": pixels_sha256(a)}
            for n, a in sorted(sources.items())
        },
        "images": images,
    }


# --- rendering (integer arithmetic: the same pixels everywhere) ---------------------------


def _resized_object(obj: dict, sources: dict[str, np.ndarray]) -> np.ndarray:
    """The (h, w, 3) object: its shifted source crop, nearest pixel centres, maybe mirrored."""
    name, top, bottom, left, right = OBJECTS[CLASSES[obj["cls"]]]
    top, bottom, left, right = (
        top + obj["dy"],
        bottom + obj["dy"],
        left + obj["dx"],
        right + obj["dx"],
    )
    rows = top + ((2 * np.arange(obj["h"]) + 1) * (bottom - top)) // (2 * obj["h"])
    cols = left + ((2 * np.arange(obj["w"]) + 1) * (right - left)) // (2 * obj["w"])
    patch = sources[name][rows[:, None], cols[None, :]]
    return patch[:, ::-1] if obj["flip"] else patch


def render(item: dict, sources: dict[str, np.ndarray]) -> np.ndarray:
    """The (H, W, 3) uint8 image of one planned image."""
    h, w = SIZE
    bg = sources[item["background"]][item["by"] : item["by"] + h, item["bx"] : item["bx"] + w]
    bg = bg.astype(np.int64)
    if bg.ndim == 2:
        bg = np.repeat(bg[..., None], 3, axis=2)
    rgb = (bg * np.array(item["tint"]) + 500) // 1000
    for obj in item["objects"]:
        rgb[obj["y"] : obj["y"] + obj["h"], obj["x"] : obj["x"] + obj["w"]] = _resized_object(
            obj, sources
        )
    return rgb.astype(np.uint8)


def boxes(item: dict) -> list[tuple[list[int], int]]:
    """``[([x1, y1, x2, y2], class 0-based), ...]`` of one planned image, in pixels."""
    return [([o["x"], o["y"], o["x"] + o["w"], o["y"] + o["h"]], o["cls"]) for o in item["objects"]]


def coco_annotations(manifest: dict, split: str) -> dict:
    """The COCO annotation file of one split (image ids and annotation ids from 1)."""
    images, annotations = [], []
    for item in manifest["images"]:
        if item["split"] != split:
            continue
        image_id = len(images) + 1
        name = item["key"].split("/")[1] + ".png"
        images.append({"id": image_id, "file_name": name, "height": SIZE[0], "width": SIZE[1]})
        for (x1, y1, x2, y2), cls in boxes(item):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })  # fmt: skip
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(manifest["classes"])]
    return {"images": images, "annotations": annotations, "categories": categories}


# --- files --------------------------------------------------------------------------------


def manifest_path() -> Path:
    return manifest_dir() / "demo-det" / "index.json"


def read_manifest() -> dict:
    return read_plan("demo-det")


def _write_images(folder: Path, manifest: dict, sources: dict[str, np.ndarray]) -> None:
    from PIL import Image

    for item in manifest["images"]:
        rgb = render(item, sources)
        if pixels_sha256(rgb) != item["image_sha256"]:
            raise StoreCorruptError(f"demo-det image {item['key']}: pixels differ from the index")
        (folder / item["split"]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / f"{item['key']}.png")
    (folder / "annotations").mkdir()
    for split in COUNTS:
        text = json.dumps(coco_annotations(manifest, split), indent=0)
        (folder / "annotations" / f"{split}.json").write_text(text)


def prepare(root: str | os.PathLike) -> Path:
    """Render the demo-det images and annotations into ``root`` (renamed into place)."""
    return render_once("demo-det", root, source, _write_images, "images")


@register_dataset(
    "demo-det",
    description="Detection demo: cat / cup / shuttle cut from CC0 photos, pasted on photo and "
    "texture backgrounds with exact boxes, 120x184, COCO layout; generated on first use, "
    "no download",
    prepare=prepare,
)
def index(root: Path, **options) -> DatasetIndex:
    """Index the demo-det images under ``root`` (the cocofolder layout; files must exist)."""
    base = Path(root)
    manifest = read_manifest()
    splits = {s: (f"annotations/{s}.json", s) for s in COUNTS}
    missing = [ann for ann, _ in splits.values() if not (base / ann).is_file()]
    missing += [
        f"{i['key']}.png" for i in manifest["images"] if not (base / f"{i['key']}.png").is_file()
    ]
    if missing:
        raise DatasetNotFoundError(
            f"demo-det dataset at {base} lacks {len(missing)} files (e.g. {missing[0]}); delete "
            "that folder and it is regenerated from scikit-image"
        )
    opts = {"index": "data_manifests/demo-det/index.json", "size": manifest["size"]}
    return index_coco_files("demo-det", base, splits, opts)[0]


def main() -> None:
    """``python -m latentcache.datasets.demo_det``: rewrite data_manifests/demo-det/index.json."""
    path = manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_manifest(build_manifest()))
    print(path)  # noqa: T201


if __name__ == "__main__":
    main()

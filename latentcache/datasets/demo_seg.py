"""The ``demo-seg`` dataset: texture shapes on photos, with exact per-pixel class masks.

::

    skimage.data.astronaut() / coffee() / rocket()  RGB photos, public domain / CC0: background
    skimage.data.brick() / grass() / gravel()       grey CC0 textures: classes 1, 2, 3
      │ every source cut in row bands: photos [0, H-240) train, [H-240, H-120) validate,
      │ [H-120, H) test; textures as the demo set: [0, 256) / [256, 384) / [384, 512)
      ▼
    one 120×152 image = a photo crop + 1 to 3 ellipses or rectangles, each filled with a
    tinted crop of one texture (later shapes on top); mask = the class under every pixel,
    with 255 (ignore) on a 2-pixel band along every class boundary, as VOC draws outlines
      ▼
    <root>/<split>/images/<key>.png   RGB PNG (lossless: the mask is exact)
    <root>/<split>/masks/<key>.png    palette PNG, VOC colours; classes.txt
    train 144 / validate 36 / test 36 ─► 8×10 latents at /16 (the canvas pads to 128×192)

No split shares a source pixel with another. The plan of every image (photo crop, shapes,
texture crops, tints) and the sha256 of its image and mask pixels live in
``data_manifests/demo-seg/index.json``, written by ``python -m latentcache.datasets.demo_seg``
from a seeded generator; :func:`prepare` renders the plan with integer arithmetic only, checks
every hash and renames the folder into place, so ``--dataset demo-seg`` needs no download.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from latentcache.datasets import demo
from latentcache.datasets.base import DatasetIndex, Sample, register_dataset
from latentcache.datasets.demo import pixels_sha256, read_plan
from latentcache.datasets.imagefolder import manifest_dir
from latentcache.datasets.masks import IGNORE_INDEX, write_palette_mask
from latentcache.errors import DatasetNotFoundError, StoreCorruptError

__all__ = [
    "CLASSES",
    "COUNTS",
    "SIZE",
    "build_manifest",
    "dump_manifest",
    "manifest_path",
    "prepare",
    "render",
    "shape_mask",
    "index",
]


CLASSES = ("background", "brick", "grass", "gravel")
BACKGROUNDS = ("astronaut", "coffee", "rocket")
SIZE = (120, 152)  # (H, W): not a multiple of 16 or 64, so the codec's canvas is padded
COUNTS = {"train": 144, "validate": 36, "test": 36}
TEXTURE_BANDS = {"train": (0, 256), "validate": (256, 384), "test": (384, 512)}
SEED = 2024
MANIFEST_VERSION = 1


def _photo_band(split: str, height: int) -> tuple[int, int]:
    h = SIZE[0]
    return {"train": (0, height - 2 * h), "validate": (height - 2 * h, height - h)}.get(
        split, (height - h, height)
    )


def source(name: str) -> np.ndarray:
    """``skimage.data.<name>()``: (H, W, 3) uint8 for the photos, (H, W) for the textures."""
    from skimage import data

    img = np.asarray(getattr(data, name)())
    want = 2 if name in CLASSES else 3
    if img.dtype != np.uint8 or img.ndim != want:
        raise DatasetNotFoundError(f"skimage.data.{name}() is {img.shape} {img.dtype}")
    return img[..., :3] if want == 3 else img


# --- the plan (made once, committed) ----------------------------------------------------


def _plan_shape(rng: np.random.Generator, split: str) -> dict:
    h, w = SIZE
    top, end = TEXTURE_BANDS[split]
    return {
        "cls": int(rng.integers(1, len(CLASSES))),
        "kind": ["ellipse", "rect"][int(rng.integers(0, 2))],
        "cy": int(rng.integers(20, h - 20)),
        "cx": int(rng.integers(20, w - 20)),
        "ry": int(rng.integers(22, 50)),
        "rx": int(rng.integers(22, 60)),
        "ty": int(rng.integers(top, end - h + 1)),
        "tx": int(rng.integers(0, 512 - w + 1)),
        "tint": [int(t) for t in rng.integers(700, 1001, size=3)],  # per mille, per channel
    }


def _plan_image(rng: np.random.Generator, split: str, i: int, shapes: dict) -> dict:
    bg = BACKGROUNDS[i % len(BACKGROUNDS)]
    top, end = _photo_band(split, shapes[bg][0])
    return {
        "key": f"{split}/{split}_{i:03d}",
        "split": split,
        "background": bg,
        "by": int(rng.integers(top, end - SIZE[0] + 1)),
        "bx": int(rng.integers(0, shapes[bg][1] - SIZE[1] + 1)),
        "shapes": [_plan_shape(rng, split) for _ in range(int(rng.integers(1, 4)))],
    }


def build_manifest() -> dict:
    """The committed plan: sources, bands and every image with its pixel hashes."""
    sources = {n: source(n) for n in BACKGROUNDS + CLASSES[1:]}
    shapes = {n: a.shape[:2] for n, a in sources.items()}
    rng = np.random.default_rng(SEED)
    images = [_plan_image(rng, split, i, shapes) for split, n in COUNTS.items() for i in range(n)]
    for item in images:
        rgb, mask = render(item, sources)
        item.update(image_sha256=pixels_sha256(rgb), mask_sha256=pixels_sha256(mask))
    return {
        "format": "latentcache-demo-seg-dataset",
        "version": MANIFEST_VERSION,
        "classes": list(CLASSES),
        "ignore_index": IGNORE_INDEX,
        "size": list(SIZE),
        "seed": SEED,
        "sources": {
            n: {"shape": list(a.shape), "pixels_sha256": pixels_sha256(a)}
            for n, a in sorted(sources.items())
        },
        "images": images,
    }


def dump_manifest(manifest: dict) -> str:
    """JSON with sorted keys, one line per image (readable diffs)."""
    return demo.dump_manifest(manifest, "images")


# --- rendering (integer arithmetic: the same pixels everywhere) ---------------------------


def shape_mask(shape: dict) -> np.ndarray:
    """(H, W) bool: the pixels of one planned ellipse or rectangle."""
    h, w = SIZE
    y, x = np.ogrid[:h, :w]
    dy, dx, ry, rx = y - shape["cy"], x - shape["cx"], shape["ry"], shape["rx"]
    if shape["kind"] == "rect":
        return (np.abs(dy) <= ry) & (np.abs(dx) <= rx)
    return dy * dy * rx * rx + dx * dx * ry * ry <= rx * rx * ry * ry


def _boundary(classes: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another class, on either side: a 2-pixel band."""
    edge = np.zeros(classes.shape, dtype=bool)
    vertical = classes[1:] != classes[:-1]
    horizontal = classes[:, 1:] != classes[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge


def render(item: dict, sources: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The (H, W, 3) uint8 image and (H, W) uint8 mask of one planned image."""
    h, w = SIZE
    rgb = sources[item["background"]][item["by"] : item["by"] + h, item["bx"] : item["bx"] + w]
    rgb = rgb.astype(np.int64)
    classes = np.zeros((h, w), dtype=np.uint8)
    for shape in item["shapes"]:
        inside = shape_mask(shape)
        tex = sources[CLASSES[shape["cls"]]][
            shape["ty"] : shape["ty"] + h, shape["tx"] : shape["tx"] + w
        ]
        tinted = (tex.astype(np.int64)[..., None] * np.array(shape["tint"]) + 500) // 1000
        rgb[inside] = tinted[inside]
        classes[inside] = shape["cls"]
    mask = np.where(_boundary(classes), IGNORE_INDEX, classes).astype(np.uint8)
    return rgb.astype(np.uint8), mask


# --- files --------------------------------------------------------------------------------


def manifest_path() -> Path:
    return manifest_dir() / "demo-seg" / "index.json"


def read_manifest() -> dict:
    return read_plan("demo-seg")


def _write_images(folder: Path, manifest: dict, sources: dict[str, np.ndarray]) -> None:
    from PIL import Image

    for item in manifest["images"]:
        rgb, mask = render(item, sources)
        if (pixels_sha256(rgb), pixels_sha256(mask)) != (item["image_sha256"], item["mask_sha256"]):
            raise StoreCorruptError(f"demo-seg image {item['key']}: pixels differ from the index")
        split, name = item["key"].split("/")
        for sub in ("images", "masks"):
            (folder / split / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / split / "images" / f"{name}.png")
        write_palette_mask(folder / split / "masks" / f"{name}.png", mask)


def prepare(root: str | os.PathLike) -> Path:
    """Render the demo-seg images into ``root`` (a temporary folder renamed into place)."""

    def write(folder: Path, manifest: dict, sources: dict[str, np.ndarray]) -> None:
        _write_images(folder, manifest, sources)
        (folder / "classes.txt").write_text("".join(f"{c}\n" for c in manifest["classes"]))

    return demo.render_once("demo-seg", root, source, write, "images")


@register_dataset(
    "demo-seg",
    description="Segmentation demo: brick / grass / gravel shapes on CC0 photos with exact "
    "masks (4 classes, 255 outlines), 120x152; generated on first use, no download",
    prepare=prepare,
)
def index(root: Path, **options) -> DatasetIndex:
    """Index the demo-seg images under ``root`` from the committed plan (files must exist)."""
    manifest = read_manifest()
    samples = []
    for item in manifest["images"]:
        split, name = item["key"].split("/")
        path, target = f"{split}/images/{name}.png", f"{split}/masks/{name}.png"
        samples.append(Sample(item["key"], path, -1, split, target))
    missing = [s.path for s in samples if not (Path(root) / s.path).is_file()]
    missing += [s.target for s in samples if not (Path(root) / s.target).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"demo-seg dataset at {root} lacks {len(missing)} files (e.g. {missing[0]}); delete "
            f"that folder and it is regenerated from scikit-image"
        )
    opts = {"index": "data_manifests/demo-seg/index.json", "size": manifest["size"]}
    return DatasetIndex(
        "demo-seg", Path(root), tuple(manifest["classes"]), tuple(samples), opts, "segmentation"
    )


def main() -> None:
    """``python -m latentcache.datasets.demo_seg``: rewrite data_manifests/demo-seg/index.json."""
    path = manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_manifest(build_manifest()))
    print(path)  # noqa: T201


if __name__ == "__main__":
    main()

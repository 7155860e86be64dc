"""The ``demo`` dataset: a MINC-style texture set cut from scikit-image's CC0 texture photos.

::

    skimage.data.brick() / grass() / gravel()      (512, 512) uint8, CC0 (their docstrings)
      │ rows [  0, 256) ─► train     128×128 patches, stride 32     5 × 13 = 65 per class
      │ rows [256, 384) ─► validate  128×128 patches, stride 16 (x) 1 × 25 = 25 per class
      │ rows [384, 512) ─► test      128×128 patches, stride 16 (x) 1 × 25 = 25 per class
      ▼
    <root>/<split>/<class>/<class>_y<Y>_x<X>.png  (grayscale PNG; encode converts to RGB)

The bands do not overlap, so no test (or validate) patch shares a source pixel with a
training patch. The plan (class, split, y, x, size) and the sha256 of every patch's pixels live
in ``data_manifests/demo/index.json``; when the root is missing, :func:`prepare` cuts the
patches from the installed scikit-image into a temporary folder, checks every patch against
that index and renames the folder into place: ``--dataset demo`` needs no download.
The hash is of the pixels (``shape|dtype|bytes``), not of the PNG file, whose bytes depend on
the zlib build; the encode stage records each file's own sha256 as usual.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from latentcache.atomic import atomic_dir
from latentcache.datasets.base import DatasetIndex, Sample, register_dataset
from latentcache.datasets.imagefolder import manifest_dir
from latentcache.errors import DatasetNotFoundError, StoreCorruptError

__all__ = [
    "CLASSES",
    "BANDS",
    "PATCH",
    "Patch",
    "plan_patches",
    "pixels_sha256",
    "source_image",
    "cut_patch",
    "build_manifest",
    "read_manifest",
    "dump_manifest",
    "render_once",
    "prepare",
    "index",
]

logger = logging.getLogger(__name__)

# class -> licence as scikit-image's docstring states it
CLASSES = {
    "brick": "CC0 (CC0Textures Bricks25, via skimage.data.brick)",
    "grass": "CC0 (DeviantArt linolafett Grass-01, via skimage.data.grass)",
    "gravel": "CC0 (CC0Textures Gravel04, via skimage.data.gravel)",
}
PATCH = 128  # -> 8 x 8 latents at /16
# split -> (first row, end row, horizontal stride, vertical stride)
BANDS = {
    "train": (0, 256, 32, 32),
    "validate": (256, 384, 16, 128),
    "test": (384, 512, 16, 128),
}
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Patch:
    key: str
    path: str
    cls: str
    label: int
    split: str
    y: int
    x: int
    size: int
    pixels_sha256: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Patch:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def source_image(name: str) -> np.ndarray:
    """The (H, W) uint8 texture photo ``skimage.data.<name>()``."""
    from skimage import data

    img = np.asarray(getattr(data, name)())
    if img.ndim != 2 or img.dtype != np.uint8:
        raise DatasetNotFoundError(
            f"skimage.data.{name}() is {img.shape} {img.dtype}, expected 2-D uint8"
        )
    return img


def pixels_sha256(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.shape}|{a.dtype}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def plan_patches(width: int = 512) -> list[Patch]:
    """Every patch's class, split and region, in a fixed order (no pixels, no hashes)."""
    patches = []
    for label, cls in enumerate(sorted(CLASSES)):
        for split, (top, end, sx, sy) in BANDS.items():
            for y in range(top, end - PATCH + 1, sy):
                for x in range(0, width - PATCH + 1, sx):
                    key = f"{split}/{cls}/{cls}_y{y:03d}_x{x:03d}"
                    patches.append(Patch(key, key + ".png", cls, label, split, y, x, PATCH))
    return patches


def cut_patch(img: np.ndarray, p: Patch) -> np.ndarray:
    return img[p.y : p.y + p.size, p.x : p.x + p.size]


def build_manifest() -> dict:
    """The committed index: sources, bands and every patch with its pixel hash."""
    images = {c: source_image(c) for c in CLASSES}
    patches = [
        Patch.from_dict(
            {**p.to_dict(), "pixels_sha256": pixels_sha256(cut_patch(images[p.cls], p))}
        )
        for p in plan_patches()
    ]
    return {
        "format": "latentcache-demo-dataset",
        "version": MANIFEST_VERSION,
        "patch": PATCH,
        "classes": sorted(CLASSES),
        "sources": {
            c: {
                "function": f"skimage.data.{c}",
                "licence": CLASSES[c],
                "shape": list(images[c].shape),
                "pixels_sha256": pixels_sha256(images[c]),
            }
            for c in sorted(CLASSES)
        },
        "bands": {
            s: {"rows": [b[0], b[1]], "stride_x": b[2], "stride_y": b[3]} for s, b in BANDS.items()
        },
        "patches": [p.to_dict() for p in patches],
    }


def dump_manifest(manifest: dict, rows_key: str = "patches") -> str:
    """JSON with sorted keys, one line per item of ``rows_key`` (readable diffs)."""
    head = json.dumps(
        {k: v for k, v in manifest.items() if k != rows_key}, indent=1, sort_keys=True
    )
    rows = ",\n  ".join(json.dumps(p, sort_keys=True) for p in manifest[rows_key])
    return head[:-2] + f',\n "{rows_key}": [\n  {rows}\n ]\n}}\n'


def manifest_path() -> Path:
    return manifest_dir() / "demo" / "index.json"


def read_plan(name: str) -> dict:
    """The committed plan ``data_manifests/<name>/index.json`` of a dataset rendered offline."""
    path = manifest_dir() / name / "index.json"
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{name} dataset index {path} not found; it ships with latentcache (data_manifests/ "
            f"of the source tree, packaged in the wheel); set LATENTCACHE_MANIFESTS to such a folder"
        )
    return json.loads(path.read_text())


def check_sources(name: str, manifest: dict, load) -> dict[str, np.ndarray]:
    """``load(source)`` for every source photo of ``manifest``, checked against its pixels sha256."""
    images = {}
    for key, src in manifest["sources"].items():
        img = load(key)
        if pixels_sha256(img) != src["pixels_sha256"]:
            raise StoreCorruptError(
                f"skimage.data.{key}() of this scikit-image differs from the one the {name} "
                f"index was made from (pixels sha256 {pixels_sha256(img)[:12]}…, expected "
                f"{src['pixels_sha256'][:12]}…)"
            )
        images[key] = img
    return images


def read_manifest() -> dict:
    return read_plan("demo")


def _write_patches(folder: Path, manifest: dict, images: dict[str, np.ndarray]) -> None:
    from PIL import Image

    for d in manifest["patches"]:
        p = Patch.from_dict(d)
        pixels = cut_patch(images[p.cls], p)
        if pixels_sha256(pixels) != p.pixels_sha256:
            raise StoreCorruptError(
                f"demo patch {p.key}: pixels do not match data_manifests/demo/index.json"
            )
        out = folder / p.path
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(out)
        if pixels_sha256(np.asarray(Image.open(out))) != p.pixels_sha256:  # PNG round trip
            raise StoreCorruptError(f"demo patch {out} does not read back as written")


def render_once(name: str, root: str | os.PathLike, load_source, write, rows_key: str) -> Path:
    """Render the offline dataset ``name`` from its committed plan into ``root``, unless it is
    there: source photos checked (``load_source``), ``write(folder, plan, sources)`` into a
    temporary sibling renamed into place, with the plan beside it as ``index.json``."""
    root = Path(root)
    if root.is_dir():
        return root
    manifest = read_plan(name)
    sources = check_sources(name, manifest, load_source)
    with atomic_dir(root) as tmp:
        write(tmp, manifest, sources)
        (tmp / "index.json").write_text(dump_manifest(manifest, rows_key))
    logger.info("%s dataset: %d %s written to %s", name, len(manifest[rows_key]), rows_key, root)
    return root


def prepare(root: str | os.PathLike) -> Path:
    """Cut the demo patches into ``root`` (atomically: a temporary folder renamed into place)."""
    return render_once("demo", root, source_image, _write_patches, "patches")


@register_dataset(
    "demo",
    description="MINC-style texture patches (brick, grass, gravel) cut from scikit-image's CC0 "
    "photos; generated on first use, no download",
    prepare=prepare,
)
def index(root: Path, **options) -> DatasetIndex:
    """Index the demo patches under ``root`` from the committed plan (files must all exist)."""
    manifest = read_manifest()
    patches = [Patch.from_dict(d) for d in manifest["patches"]]
    missing = [p.path for p in patches if not (Path(root) / p.path).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"demo dataset at {root} lacks {len(missing)} of {len(patches)} patches "
            f"(e.g. {missing[0]}); delete that folder and it is regenerated from scikit-image"
        )
    samples = tuple(Sample(p.key, p.path, p.label, p.split) for p in patches)
    opts = {"index": "data_manifests/demo/index.json", "patch": manifest["patch"]}
    return DatasetIndex("demo", Path(root), tuple(manifest["classes"]), samples, opts)


def main() -> None:
    """``python -m latentcache.datasets.demo``: rewrite data_manifests/demo/index.json."""
    path = manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_manifest(build_manifest()))
    print(path)  # noqa: T201


if __name__ == "__main__":
    main()

"""PASCAL VOC 2012 semantic segmentation, with SBD's extra masks (the ``train_aug`` set).

::

    <root>/VOCdevkit/VOC2012/                      VOCtrainval_11-May-2012.tar, unpacked
        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png                 palette PNG: indices 0..20, 255 outlines
        ImageSets/Segmentation/{train,val,trainval}.txt
    <root>/benchmark_RELEASE/dataset/              SBD's benchmark.tgz, unpacked (optional)
        img/<id>.jpg   cls/<id>.mat                GTcls.Segmentation: indices 0..20
        train.txt  val.txt                         8,498 + 2,857 ids
                 │
                 ▼
    index(root, train_split="train_aug") ──► split "train": train_aug  (10,582)
                                             split "val":   VOC2012 val (1,449)

``train_aug`` is the DeepLab training set: SBD train + SBD val + VOC2012 train, minus every
VOC2012 val id, so nothing of val is trained on. An id with both a VOC mask and an SBD mask
takes the VOC one (VOC's hand-drawn masks, with their 255 outlines, are the reference; SBD's
have no ignore band). The image is VOC's JPEGImages/<id>.jpg, else SBD's img/<id>.jpg (the
same photo). SBD's ``train_noval.txt`` (a separate download: SBD train without VOC2012 val)
is not read: with VOC2012 train it gives at most 9,962 ids, not 10,582, since the set also
needs SBD val.

Without SBD, the train split is VOC2012 ``train`` (1,464) and a warning says so; the index
options record ``train_split`` as used and ``train_split_requested``. Lists whose sizes
differ from the official counts (``data_manifests/voc2012/counts.json``) are warned about,
not refused. A listed id whose image is missing is left out with a warning; one whose mask
is missing stays, with the path where the mask should be, so that encoding records it as
failed (indexed = stored + failed).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from latentcache.datasets.base import DatasetIndex, Sample, register_dataset
from latentcache.datasets.imagefolder import manifest_dir
from latentcache.errors import ConfigError, DatasetNotFoundError
from latentcache.manifests import download_hint

__all__ = ["DOWNLOAD_URL", "SBD_URL", "TRAIN_SPLITS", "index", "read_classes", "read_counts"]

logger = logging.getLogger(__name__)

DOWNLOAD_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
SBD_URL = (
    "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
    "semantic_contours/benchmark.tgz"
)
TRAIN_SPLITS = ("train_aug", "train")
_VOC_DIRS = ("VOCdevkit/VOC2012", "VOC2012", ".")
_SBD_DIRS = ("benchmark_RELEASE/dataset", "benchmark_RELEASE", "SBD/dataset", "SBD", "sbd")
_ID = re.compile(r"^[A-Za-z0-9_\-]+$")


def read_classes() -> list[str]:
    """The 21 class names (background first) from ``data_manifests/voc2012/classes.txt``."""
    return _manifest_file("classes.txt").split()


def read_counts() -> dict:
    return json.loads(_manifest_file("counts.json"))


def _manifest_file(name: str) -> str:
    path = manifest_dir() / "voc2012" / name
    if not path.is_file():
        raise DatasetNotFoundError(
            f"VOC manifest {path} not found; it ships with latentcache (data_manifests/ of the "
            f"source tree, packaged in the wheel); set LATENTCACHE_MANIFESTS to such a folder"
        )
    return path.read_text()


def _find_voc(root: Path) -> Path:
    for rel in _VOC_DIRS:
        base = root / rel
        if (base / "ImageSets" / "Segmentation").is_dir():
            return base
    raise DatasetNotFoundError(
        f"PASCAL VOC 2012 not found in {root}: expected VOCdevkit/VOC2012/ImageSets/"
        f"Segmentation/ there. Download {DOWNLOAD_URL} (and SBD's {SBD_URL} for train_aug), "
        f"unpack both into one folder and pass it with --data-root." + download_hint("voc", root)
    )


def _find_sbd(root: Path) -> Path | None:
    for rel in _SBD_DIRS:
        base = root / rel
        if (base / "cls").is_dir() and (base / "train.txt").is_file():
            return base
    return None


def _read_ids(path: Path) -> list[str]:
    """The ids of a list file, one a line (VOC's ``2007_000032``); anything else is refused."""
    if not path.is_file():
        raise DatasetNotFoundError(f"VOC list {path} is missing; the official archive has it")
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        item = line.strip()
        if not item:
            continue
        if not _ID.match(item) or len(item) > 128:
            raise ConfigError(
                f"{path}:{n}: {item[:60]!r} is not an image id (letters, digits, _ -)"
            )
        ids.append(item)
    return list(dict.fromkeys(ids))  # a repeated line lists the image once


def _warn_count(what: str, n: int, expected: int) -> None:
    if n != expected:
        logger.warning("voc: %s lists %d images, the official count is %d", what, n, expected)


def _check_train_split(train_split: str) -> str:
    if train_split not in TRAIN_SPLITS:
        raise ConfigError(
            f'Invalid VOC train_split "{train_split}", should be one of {TRAIN_SPLITS}'
        )
    return train_split


@register_dataset(
    "voc",
    description="PASCAL VOC 2012 segmentation (21 classes, 255 = ignore): train_aug with SBD "
    "(10,582; option train_split=train for VOC2012 train, 1,464) and val (1,449)",
    download_url=DOWNLOAD_URL,
)
def index(root: Path, train_split: str = "train_aug") -> DatasetIndex:
    """List VOC 2012 (and SBD, when present) under ``root``: splits ``train`` and ``val``."""
    requested = _check_train_split(train_split)
    root = Path(root)
    voc = _find_voc(root)
    counts = read_counts()["splits"]
    lists = voc / "ImageSets" / "Segmentation"
    train, val = _read_ids(lists / "train.txt"), _read_ids(lists / "val.txt")
    _warn_count("ImageSets/Segmentation/train.txt", len(train), counts["train"])
    _warn_count("ImageSets/Segmentation/val.txt", len(val), counts["val"])
    sbd = _find_sbd(root) if requested == "train_aug" else None
    if requested == "train_aug" and sbd is None:
        logger.warning(
            "voc: SBD not found under %s (benchmark_RELEASE/dataset/); training on VOC2012 "
            "train (%d images) instead of train_aug (10,582): get %s for train_aug",
            root,
            len(train),
            SBD_URL,
        )
    rows = [("val", i, _voc_mask(voc, i)) for i in val]
    if sbd is None:
        rows += [("train", i, _voc_mask(voc, i)) for i in train]
    else:
        rows += _train_aug(voc, sbd, train, set(val), counts["train_aug"])
    options = {
        "train_split": "train_aug" if sbd is not None else "train",
        "train_split_requested": requested,
        "sbd": sbd.relative_to(root).as_posix() if sbd is not None else None,
    }
    return _make_index(root, voc, sbd, rows, options)


def _voc_mask(voc: Path, image_id: str) -> Path:
    return voc / "SegmentationClass" / f"{image_id}.png"


def _train_aug(
    voc: Path, sbd: Path, train: list[str], val: set[str], expected: int
) -> list[tuple[str, str, Path]]:
    """``("train", id, mask)`` for (SBD train + val + VOC train) - VOC val; VOC masks first."""
    sbd_ids = _read_ids(sbd / "train.txt")
    sbd_val = sbd / "val.txt"
    sbd_ids += _read_ids(sbd_val) if sbd_val.is_file() else []
    voc_train = set(train)
    ids = sorted((set(sbd_ids) | voc_train) - val)
    _warn_count(
        "train_aug (SBD train + val + VOC2012 train, minus VOC2012 val)", len(ids), expected
    )
    return [
        ("train", i, _voc_mask(voc, i) if i in voc_train else sbd / "cls" / f"{i}.mat") for i in ids
    ]


def _make_index(
    root: Path, voc: Path, sbd: Path | None, rows: list[tuple[str, str, Path]], options: dict
) -> DatasetIndex:
    samples, missing = [], []
    for split, image_id, mask in rows:
        image = _image_path(voc, sbd, image_id)
        if image is None:
            missing.append(image_id)
            continue
        rel = image.relative_to(root).as_posix()
        target = mask.relative_to(root).as_posix()
        samples.append(Sample(image_id, rel, -1, split, target))
    if missing and len(missing) == len(rows):
        raise DatasetNotFoundError(
            f"voc: none of the {len(rows)} listed images exist under {voc / 'JPEGImages'}"
        )
    if missing:
        logger.warning(
            "voc under %s: %d of %d listed images are missing (e.g. %s); indexing the %d present",
            root,
            len(missing),
            len(rows),
            ", ".join(missing[:3]),
            len(samples),
        )
    no_mask = sum(not (root / s.target).is_file() for s in samples)
    if no_mask:
        logger.warning("voc: %d indexed images have no mask file; encoding records them", no_mask)
    order = {"train": 0, "val": 1}
    samples.sort(key=lambda s: (order[s.split], s.key))
    return DatasetIndex(
        "voc", root, tuple(read_classes()), tuple(samples), options, task="segmentation"
    )


def _image_path(voc: Path, sbd: Path | None, image_id: str) -> Path | None:
    for folder in (voc / "JPEGImages", sbd / "img" if sbd is not None else None):
        if folder is not None and (folder / f"{image_id}.jpg").is_file():
            return folder / f"{image_id}.jpg"
    return None

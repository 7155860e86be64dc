"""COCO-2017 detection (``coco``) and any folder of COCO-format annotations (``cocofolder``).

::

    coco:        <root>/{train2017,val2017}/<file_name>
                 <root>/annotations/instances_{train2017,val2017}.json
                   ──► train 118,287 / validate 5,000 images (1,021 / 48 without annotations),
                       80 categories (original ids 1..90)
    cocofolder:  <root>/annotations/<split>.json  (or instances_<split>.json)
                 <root>/<split>/<file_name>       split: train, validate or val, test
                   ──► one split per annotation file found

    Sample(key "val2017/000000397133", path "val2017/000000397133.jpg", label -1,
           target "annotations/instances_val2017.json#397133")   (the image id after '#')

The categories come from the annotation files (ordered by original id; the contiguous id is
the position, ``index.options["category_ids"]`` keeps the original ids beside
``index.classes``); every split's file must list the same ones. Images without annotations
are kept. Images a file lists but the folder lacks are left out with a warning; the COCO
counts differ from the official ones (``data_manifests/coco/counts.json``): a warning.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from latentcache.datasets.base import DatasetIndex, Sample, register_dataset, unique_keys
from latentcache.datasets.coco_json import CocoListing, read_coco_listing
from latentcache.datasets.counts import warn_if_counts_differ
from latentcache.datasets.imagefolder import SPLIT_FOLDERS, SPLIT_ORDER
from latentcache.errors import ConfigError, DatasetNotFoundError
from latentcache.manifests import download_hint

__all__ = ["DOWNLOAD_URL", "COCO_SPLITS", "index", "index_folder", "index_coco_files"]

logger = logging.getLogger(__name__)

DOWNLOAD_URL = "https://cocodataset.org/#download"
COCO_SPLITS = {"train": "train2017", "validate": "val2017"}


def _split_samples(base: Path, split: str, ann: str, folder: str, listing: CocoListing):
    samples, missing = [], 0
    for image_id, (file_name, _) in sorted(listing.images.items(), key=lambda kv: kv[1][0]):
        path = f"{folder}/{file_name}"
        if not (base / path).is_file():
            missing += 1
            continue
        samples.append(Sample(path, path, -1, split, f"{ann}#{image_id}"))  # key: below
    if missing:
        logger.warning(
            "%s lists %d images that %s lacks; indexing the %d present",
            ann, missing, base / folder, len(samples),
        )  # fmt: skip
    return samples


def _same_categories(listings: dict[str, CocoListing], files: dict[str, str]) -> CocoListing:
    first_split, first = next(iter(listings.items()))
    for split, other in listings.items():
        if (other.category_ids, other.category_names) != (
            first.category_ids,
            first.category_names,
        ):
            raise ConfigError(
                f"{files[split]} lists other categories than {files[first_split]}; every "
                "split of a detection dataset must share one category list"
            )
    return first


def index_coco_files(
    name: str, base: Path, splits: dict[str, tuple[str, str]], options: dict | None = None
) -> tuple[DatasetIndex, dict[str, CocoListing]]:
    """Index ``{split: (annotation file, image folder)}`` (paths relative to ``base``)."""
    listings = {s: read_coco_listing(base / ann) for s, (ann, _) in splits.items()}
    ref = _same_categories(listings, {s: ann for s, (ann, _) in splits.items()})
    samples = [
        sample
        for split, (ann, folder) in splits.items()
        for sample in _split_samples(base, split, ann, folder, listings[split])
    ]
    if not samples:
        raise DatasetNotFoundError(
            f"{name}: none of the images the annotation files list exist under {base}"
        )
    keys = unique_keys(s.path for s in samples)
    samples = [dataclasses.replace(s, key=k) for s, k in zip(samples, keys, strict=True)]
    opts = {**(options or {}), "category_ids": list(ref.category_ids)}
    index = DatasetIndex(name, base, ref.category_names, tuple(samples), opts, task="detection")
    return index, listings


@register_dataset(
    "coco",
    description="COCO-2017 detection: train2017 (118,287) / val2017 as validate (5,000), "
    "80 categories from annotations/instances_*2017.json; images without boxes kept",
    download_url=DOWNLOAD_URL,
)
def index(root: Path) -> DatasetIndex:
    """List COCO-2017 under ``root`` (``{train,val}2017/`` and ``annotations/``)."""
    base = Path(root)
    splits = {
        s: (f"annotations/instances_{folder}.json", folder)
        for s, folder in COCO_SPLITS.items()
        if (base / "annotations" / f"instances_{folder}.json").is_file()
    }
    if not splits:
        raise DatasetNotFoundError(
            f"coco: no annotations/instances_{{train,val}}2017.json in {base}. Download the "
            f"2017 images and annotations from {DOWNLOAD_URL}, unpack them into one folder "
            "and pass it with --data-root." + download_hint("coco", base)
        )
    idx, listings = index_coco_files("coco", base, splits)
    _check_coco_counts(idx, listings)
    return idx


def _check_coco_counts(idx: DatasetIndex, listings: dict[str, CocoListing]) -> None:
    images = {s: len(idx.split(s)) for s in COCO_SPLITS}
    annotations = {s: listings[s].annotations if s in listings else 0 for s in COCO_SPLITS}
    categories = {"all": len(idx.classes)}
    for key, found in (
        ("splits", images),
        ("annotations", annotations),
        ("categories", categories),
    ):
        warn_if_counts_differ("coco", key, found, logger)


def _folder_splits(base: Path) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for folder in sorted(SPLIT_FOLDERS):
        split = SPLIT_FOLDERS[folder]
        for ann in (f"annotations/{folder}.json", f"annotations/instances_{folder}.json"):
            if (base / ann).is_file() and (base / folder).is_dir():
                if split in found:
                    raise ConfigError(
                        f"cocofolder {base}: split {split} has two annotation files "
                        f"({found[split][0]} and {ann})"
                    )
                found[split] = (ann, folder)
    return {s: found[s] for s in SPLIT_ORDER if s in found}


@register_dataset(
    "cocofolder",
    description="Your own COCO-format detection data: <root>/annotations/<split>.json "
    "(or instances_<split>.json) with the images in <root>/<split>/ (train, validate or val, "
    "test); categories from the files",
)
def index_folder(root: Path) -> DatasetIndex:
    """List a folder of COCO-format annotation files and their image folders."""
    base = Path(root)
    splits = _folder_splits(base)
    if not splits:
        raise DatasetNotFoundError(
            f"cocofolder {base}: expected annotations/<split>.json beside an image folder "
            f"<split>/ (splits: {sorted(SPLIT_FOLDERS)})"
        )
    return index_coco_files("cocofolder", base, splits)[0]

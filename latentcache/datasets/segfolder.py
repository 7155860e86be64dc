"""``segfolder``: a user's own segmentation data, images plus masks plus a class list.

::

    <root>/classes.txt                   one class name a line: class index = line index
    <root>/<split>/images/<name>.<ext>   split folders train, validate (or val), test
    <root>/<split>/masks/<name>.png      the mask of images/<name>.* (same relative stem)
        or
    <root>/images/**  <root>/masks/**    one pool of files, split by list files
    <root>/{train,val,validate,test}.txt names (relative stems, extension optional), one a
                                         line; without any list file every image is "train"

Masks are read by :func:`latentcache.datasets.masks.read_mask`: palette PNGs as their indices,
grey PNGs as they are, SBD-style .mat files; 255 is the ignore index, so at most 255 classes.
A mask is matched to its image by the path under ``images/`` without the extension. An image
without a mask is indexed with the path where its mask should be (``masks/<name>.png``), so
encoding records it as failed with that reason (indexed = stored + failed) and a warning
counts them here; masks without an image are counted in a warning and not indexed. Two masks
for one image (``a.png`` and ``a.mat``) are refused.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from latentcache.datasets.base import DatasetIndex, Sample, register_dataset, unique_keys
from latentcache.datasets.imagefolder import SPLIT_FOLDERS, SPLIT_ORDER
from latentcache.datasets.masks import IGNORE_INDEX, MASK_EXTENSIONS
from latentcache.errors import ConfigError, DatasetNotFoundError
from latentcache.images import list_images

__all__ = ["CLASS_FILE", "index", "read_class_file"]

logger = logging.getLogger(__name__)

CLASS_FILE = "classes.txt"
_LISTS = ("train", "val", "validate", "test")


def read_class_file(path: Path) -> list[str]:
    """Class names, one a line (blank lines skipped); unique, at most 255 (255 = ignore)."""
    if not path.is_file():
        raise DatasetNotFoundError(
            f"segmentation folder: class list {path} is missing; write one class name a line "
            f"(the line index is the class index in the masks)"
        )
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    dup = sorted({n for n in names if names.count(n) > 1})
    if not names or dup or len(names) > IGNORE_INDEX:
        raise ConfigError(
            f"{path}: {len(names)} class names{f', repeated: {dup[:5]}' if dup else ''}; "
            f"expected 1 to {IGNORE_INDEX} distinct names ({IGNORE_INDEX} is the ignore index)"
        )
    return names


def _stem(relpath: str) -> str:
    return str(PurePosixPath(relpath).with_suffix(""))


def _masks_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in MASK_EXTENSIONS or path.name.startswith("."):
            continue
        stem = _stem(path.relative_to(folder).as_posix())
        if stem in found:
            raise ConfigError(f"segmentation folder: two masks for {stem!r}: {found[stem]}, {path}")
        found[stem] = path
    return found


def _pair(images: Path, masks: Path) -> tuple[list[tuple[str, Path, Path]], int]:
    """``(stem, image, mask)`` for every image under ``images``; masks left without an image."""
    by_stem = _masks_by_stem(masks)
    rows = []
    for image in list_images(images):
        stem = _stem(image.relative_to(images).as_posix())
        rows.append((stem, image, by_stem.pop(stem, masks / f"{stem}.png")))
    return rows, len(by_stem)


def _split_folders(root: Path) -> list[tuple[str, Path]]:
    return [
        (SPLIT_FOLDERS[d.name.lower()], d)
        for d in sorted(root.iterdir())
        if d.is_dir() and d.name.lower() in SPLIT_FOLDERS and (d / "images").is_dir()
    ]


def _rows_from_split_folders(root: Path) -> tuple[list[tuple[str, Path, Path]], int]:
    rows, orphans = [], 0
    for split, folder in _split_folders(root):
        pairs, n = _pair(folder / "images", folder / "masks")
        rows += [(split, image, mask) for _, image, mask in pairs]
        orphans += n
    return rows, orphans


def _read_list(path: Path) -> list[str]:
    stems = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        item = line.strip()
        if not item:
            continue
        if item.startswith("/") or ".." in PurePosixPath(item).parts:
            raise ConfigError(f"{path}:{n}: {item!r} is not a path under images/")
        stems.append(_stem(item) if PurePosixPath(item).suffix else item)
    return stems


def _rows_from_lists(root: Path) -> tuple[list[tuple[str, Path, Path]], int]:
    pairs, orphans = _pair(root / "images", root / "masks")
    lists = [(SPLIT_FOLDERS[n], root / f"{n}.txt") for n in _LISTS if (root / f"{n}.txt").is_file()]
    if not lists:
        return [("train", image, mask) for _, image, mask in pairs], orphans
    by_stem = {stem: (image, mask) for stem, image, mask in pairs}
    rows, unknown = [], []
    for split, path in lists:
        for stem in _read_list(path):
            if stem in by_stem:
                rows.append((split, *by_stem[stem]))
            else:
                unknown.append(stem)
    if unknown:
        logger.warning(
            "segfolder: %d listed names have no image under %s (e.g. %s); not indexed",
            len(unknown),
            root / "images",
            ", ".join(unknown[:3]),
        )
    return rows, orphans


@register_dataset(
    "segfolder",
    description="Your segmentation data: classes.txt + <split>/{images,masks}/ or "
    "images/ + masks/ (+ train.txt/val.txt lists); masks matched by name, 255 = ignore",
)
def index(root: Path) -> DatasetIndex:
    """List a segmentation folder (see the module docstring for the two layouts)."""
    root = Path(root)
    classes = read_class_file(root / CLASS_FILE)
    if _split_folders(root):
        rows, orphans = _rows_from_split_folders(root)
    elif (root / "images").is_dir():
        rows, orphans = _rows_from_lists(root)
    else:
        raise DatasetNotFoundError(
            f"segmentation folder {root} has neither <split>/images/ (split folders: "
            f"{sorted(SPLIT_FOLDERS)}) nor images/ with masks/ beside it"
        )
    if not rows:
        raise DatasetNotFoundError(f"segmentation folder {root} holds no image files")
    _warn_gaps(root, rows, orphans)
    return _make_index(root, classes, rows)


def _warn_gaps(root: Path, rows: list[tuple[str, Path, Path]], orphans: int) -> None:
    no_mask = [image for _, image, mask in rows if not mask.is_file()]
    if no_mask:
        logger.warning(
            "segfolder: %d of %d images under %s have no mask (e.g. %s); they are indexed and "
            "encoding records them as failed",
            len(no_mask),
            len(rows),
            root,
            ", ".join(p.name for p in no_mask[:3]),
        )
    if orphans:
        logger.warning(
            "segfolder: %d mask files under %s have no image; not indexed", orphans, root
        )


def _make_index(root: Path, classes: list[str], rows: list[tuple[str, Path, Path]]) -> DatasetIndex:
    rel = sorted(
        (split, image.relative_to(root).as_posix(), mask.relative_to(root).as_posix())
        for split, image, mask in rows
    )
    rel.sort(key=lambda r: (SPLIT_ORDER.index(r[0]), r[1]))
    if len({path for _, path, _ in rel}) != len(rel):
        raise ConfigError(f"segmentation folder {root}: an image is listed in two splits")
    keys = unique_keys(path for _, path, _ in rel)
    samples = tuple(
        Sample(key, path, -1, split, target)
        for key, (split, path, target) in zip(keys, rel, strict=True)
    )
    return DatasetIndex(
        "segfolder", root, tuple(classes), samples, {"class_file": CLASS_FILE}, "segmentation"
    )

"""Class-folder datasets: the ``imagefolder`` adapter and the committed-split helpers.

::

    <root>/<class>/*            ──► every image in split "train"
    <root>/<split>/<class>/*    ──► split folders train / validate (or val) / test

    <root>/<class>/*  +  data_manifests/<name>/{classes.txt,splits.json}
                      ──► index_listed_folder(): the split comes from the committed lists
                          (RESISC-45, RSSCN7: datasets without an official split)

Files are listed, never opened: any regular file whose extension is in
:data:`IMAGE_EXTENSIONS` (any case) is indexed, even if it later turns out to be corrupt (the
encode stage records the failure). Other files (``notes.txt``) and hidden entries (``.*``)
are ignored. Classes are the union of the class folder names, sorted; order is deterministic.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from latentcache.datasets.base import (
    DatasetIndex,
    Sample,
    register_dataset,
    unique_keys,
)
from latentcache.errors import ConfigError, DatasetNotFoundError
from latentcache.images import IMAGE_EXTENSIONS, is_image_name, list_images
from latentcache.manifests import download_hint, manifest_dir

__all__ = [
    "SPLIT_FOLDERS",
    "SPLIT_ORDER",
    "index",
    "list_images",
    "make_index",
    "manifest_dir",
    "read_split_manifest",
    "select_listed",
    "index_listed_folder",
]

logger = logging.getLogger(__name__)

SPLIT_ORDER = ("train", "validate", "test")
# folder name (lower case) -> split name
SPLIT_FOLDERS = {"train": "train", "validate": "validate", "val": "validate", "test": "test"}


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _count_ignored(folder: Path) -> int:
    """Visible regular files under ``folder`` that are not images (logged, not indexed)."""
    count = 0
    for _dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        count += sum(not n.startswith(".") and not is_image_name(n) for n in filenames)
    return count


def _split_layout(root: Path, dirs: list[Path]) -> bool:
    """True for ``<root>/<split>/<class>``; refuses a mix of split and class folders."""
    splits = [d.name for d in dirs if d.name.lower() in SPLIT_FOLDERS]
    if not splits:
        return False
    others = [d.name for d in dirs if d.name.lower() not in SPLIT_FOLDERS]
    if others:
        raise ConfigError(
            f"image folder {root} mixes split folders {splits} with class folders {others}; "
            f"use either <root>/<class>/* or <root>/<split>/<class>/* "
            f"(split folders: {sorted(SPLIT_FOLDERS)})"
        )
    return True


def _class_folders(root: Path) -> list[tuple[str, Path]]:
    """``(split, class folder)`` pairs for either layout."""
    dirs = _visible_dirs(root)
    if not _split_layout(root, dirs):
        return [("train", d) for d in dirs]
    return [(SPLIT_FOLDERS[s.name.lower()], c) for s in dirs for c in _visible_dirs(s)]


@register_dataset(
    "imagefolder",
    description="Any folder of class folders: <root>/<class>/* or <root>/<split>/<class>/* "
    "(split folders train, validate or val, test); classes sorted by name",
)
def index(root: Path) -> DatasetIndex:
    """List ``root`` laid out as ``<class>/*`` (all "train") or ``<split>/<class>/*``."""
    root = Path(root)
    folders = _class_folders(root)
    if not folders:
        raise DatasetNotFoundError(
            f"image folder {root} has no class folders; expected <root>/<class>/<image> "
            f"or <root>/<split>/<class>/<image> (split folders: {sorted(SPLIT_FOLDERS)})"
        )
    classes = sorted({folder.name for _, folder in folders})
    label = {name: i for i, name in enumerate(classes)}
    rows = [
        (split, path.relative_to(root).as_posix(), label[folder.name])
        for split, folder in folders
        for path in _images_of_class(folder)
    ]
    if not rows:
        raise DatasetNotFoundError(
            f"image folder {root} has class folders {classes[:10]} but no image files "
            f"(extensions: {' '.join(IMAGE_EXTENSIONS)})"
        )
    ignored = sum(_count_ignored(folder) for _, folder in folders)
    if ignored:
        logger.info("imagefolder: ignored %d non-image files under %s", ignored, root)
    return make_index("imagefolder", root, classes, rows)


def _images_of_class(folder: Path) -> list[Path]:
    images = list_images(folder)
    if not images:
        logger.warning("imagefolder: class folder %s holds no image files", folder)
    return images


def make_index(
    name: str, root: Path, classes: list[str], rows: list[tuple[str, str, int]], options=None
) -> DatasetIndex:
    """A :class:`DatasetIndex` from ``(split, relpath, label)`` rows, sorted by split then path."""
    rows = sorted(rows, key=lambda r: (SPLIT_ORDER.index(r[0]), r[1]))
    keys = unique_keys(path for _, path, _ in rows)
    samples = tuple(
        Sample(key, path, label, split)
        for key, (split, path, label) in zip(keys, rows, strict=True)
    )
    return DatasetIndex(name, root, tuple(classes), samples, dict(options or {}))


# --- committed splits (RESISC-45, RSSCN7) and listed files (MINC-2500) ------------------


def read_split_manifest(name: str) -> tuple[list[str], dict]:
    """Class names (label order) and the split file of ``data_manifests/<name>/``."""
    folder = manifest_dir() / name
    try:
        classes = (folder / "classes.txt").read_text().split()
        manifest = json.loads((folder / "splits.json").read_text())
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(
            f"split manifest {exc.filename} not found; it ships with latentcache (data_manifests/ "
            f"of the source tree, packaged in the wheel); set LATENTCACHE_MANIFESTS to such a folder"
        ) from exc
    return classes, manifest


def select_listed(
    name: str,
    base: Path,
    listed: list[tuple[str, str]],
    *,
    source: str,
    scan: Path,
    log: logging.Logger,
) -> list[tuple[str, str]]:
    """The ``(split, relpath)`` pairs whose file exists under ``base``.

    None present: :class:`DatasetNotFoundError`. Some missing, or images under ``scan`` that
    no list names: one warning with both counts.
    """
    missing = [path for _, path in listed if not (base / path).is_file()]
    if len(missing) == len(listed):
        raise DatasetNotFoundError(
            f"{name}: none of the {len(listed)} files listed in {source} exist under {base} "
            f"(expected e.g. {base / listed[0][1] if listed else '?'})"
        )
    names = {path for _, path in listed}
    on_disk = [p.relative_to(base).as_posix() for p in list_images(scan)] if scan.is_dir() else []
    unlisted = [p for p in on_disk if p not in names]
    if missing or unlisted:
        log.warning("%s", _gap_message(name, base, len(listed), missing, unlisted, source))
    gone = set(missing)
    return [(split, path) for split, path in listed if path not in gone]


def _gap_message(
    name: str, base: Path, n_listed: int, missing: list[str], unlisted: list[str], source: str
) -> str:
    parts = [f"{name} under {base}:"]
    if missing:
        parts.append(
            f"{len(missing)} of {n_listed} files listed in {source} are missing "
            f"(e.g. {', '.join(missing[:3])}); indexing the {n_listed - len(missing)} present."
        )
    if unlisted:
        parts.append(
            f"{len(unlisted)} image files on disk are in no split list and are not indexed "
            f"(e.g. {', '.join(unlisted[:3])})."
        )
    return " ".join(parts)


def _find_class_root(
    name: str, root: Path, classes: list[str], wrappers: tuple[str, ...], download_url: str
) -> Path:
    candidates = [root, *(root / w for w in wrappers)]
    for base in candidates:
        if any((base / c).is_dir() for c in classes):
            return base
    raise DatasetNotFoundError(
        f"{name}: none of its {len(classes)} class folders ({', '.join(classes[:3])}, ...) "
        f"found in {' or '.join(map(str, candidates))}. Download it from {download_url} and "
        f"pass the folder that holds the class folders with --data-root."
        + download_hint(name, root)
    )


def index_listed_folder(
    name: str, root: Path, *, wrappers: tuple[str, ...], download_url: str, log: logging.Logger
) -> DatasetIndex:
    """Index ``<root>/<class>/*`` with the split committed in ``data_manifests/<name>/``."""
    classes, manifest = read_split_manifest(name)
    base = _find_class_root(name, Path(root), classes, wrappers, download_url)
    source = f"data_manifests/{name}/splits.json"
    listed = [(s, p) for s in SPLIT_ORDER for p in manifest["splits"].get(s, [])]
    present = select_listed(name, base, listed, source=source, scan=base, log=log)
    label = {c: i for i, c in enumerate(classes)}
    rows = [(split, path, label[path.split("/")[0]]) for split, path in present]
    options = {"split_manifest": source, "seed": manifest["seed"], "ratios": manifest["ratios"]}
    return make_index(name, base, classes, rows, options)

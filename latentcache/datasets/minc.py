"""MINC-2500 (Bell et al. 2015): 23 materials x 2,500 patches of 362x362, official splits.

::

    <root>/                          (or <root>/minc-2500/)
      categories.txt                 one class name a line: label = line index (official order)
      images/<class>/<class>_NNNNNN.jpg
      labels/{train,validate,test}{1..5}.txt   lines like images/brick/brick_001234.jpg
                 │
                 ▼
    index(root, split_set=1) ──► DatasetIndex: train 48,875 / validate 2,875 / test 5,750
                                 (2,125 / 125 / 250 per class in every split set)

Keys are the label paths without ``images/`` and extension (``brick/brick_001234``).
Listed files that are missing are left out with a warning (all missing: an error).
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from latentcache.datasets.base import DatasetIndex, Sample, register_dataset, unique_keys
from latentcache.datasets.imagefolder import SPLIT_ORDER, select_listed
from latentcache.errors import ConfigError, DatasetNotFoundError
from latentcache.manifests import download_hint

__all__ = ["DOWNLOAD_URL", "SPLIT_SETS", "index"]

logger = logging.getLogger(__name__)

DOWNLOAD_URL = "http://opensurfaces.cs.cornell.edu/static/minc/minc-2500.tar.gz"
SPLIT_SETS = (1, 2, 3, 4, 5)
_WRAPPER = "minc-2500"


def _check_split_set(split_set: object) -> int:
    valid = isinstance(split_set, int) and not isinstance(split_set, bool)
    if isinstance(split_set, str) and split_set.strip().isdigit():
        split_set, valid = int(split_set), True
    if not valid or split_set not in SPLIT_SETS:
        raise ConfigError(
            f'Invalid MINC-2500 split_set "{split_set}", should be between '
            f"({SPLIT_SETS[0]}, {SPLIT_SETS[-1]})"
        )
    return split_set


def _find_root(root: Path) -> Path:
    """``root`` itself or ``root/minc-2500``: the first that holds the dataset's files."""
    for base in (root, root / _WRAPPER):
        if any((base / part).exists() for part in ("images", "labels", "categories.txt")):
            return base
    raise DatasetNotFoundError(
        f"MINC-2500 not found in {root} or {root / _WRAPPER}: expected images/, labels/ and "
        f"categories.txt there. Download it from {DOWNLOAD_URL}, unpack it and pass the "
        f"folder with --data-root." + download_hint("minc", root)
    )


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetNotFoundError(
            f"MINC-2500 file {path} is missing; the archive {DOWNLOAD_URL} contains it"
        )
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _read_split(base: Path, split: str, split_set: int, label: dict[str, int]) -> list[str]:
    """The lines of ``labels/<split><split_set>.txt``; each must name a known class."""
    labels_file = base / "labels" / f"{split}{split_set}.txt"
    lines = _read_lines(labels_file)
    for line in lines:
        name = PurePosixPath(line).parent.name
        if name not in label:
            raise DatasetNotFoundError(
                f"{labels_file}: {line!r} names class {name!r}, which categories.txt does "
                f"not list (classes: {sorted(label)})"
            )
    return lines


@register_dataset(
    "minc",
    description="MINC-2500 materials: 23 classes x 2,500 images, 362x362; official splits "
    "(split_set 1..5), classes in categories.txt order",
    download_url=DOWNLOAD_URL,
)
def index(root: Path, split_set: int = 1) -> DatasetIndex:
    """List MINC-2500 under ``root`` with the official split set ``split_set`` (1..5)."""
    split_set = _check_split_set(split_set)
    base = _find_root(Path(root))
    classes = _read_lines(base / "categories.txt")
    label = {name: i for i, name in enumerate(classes)}
    listed = [
        (split, line)
        for split in SPLIT_ORDER
        for line in _read_split(base, split, split_set, label)
    ]
    source = f"labels/{{train,validate,test}}{split_set}.txt"
    present = select_listed("minc", base, listed, source=source, scan=base / "images", log=logger)
    return _make_index(base, classes, present, label, split_set)


def _make_index(
    base: Path,
    classes: list[str],
    present: list[tuple[str, str]],
    label: dict[str, int],
    split_set: int,
) -> DatasetIndex:
    keys = unique_keys(path.removeprefix("images/") for _, path in present)
    samples = tuple(
        Sample(key, path, label[PurePosixPath(path).parent.name], split)
        for key, (split, path) in zip(keys, present, strict=True)
    )
    return DatasetIndex("minc", base, tuple(classes), samples, {"split_set": split_set})

"""The dataset contract: an adapter turns a dataset root into a :class:`DatasetIndex`.

::

    root ──► adapter.index(root, **options) ──► DatasetIndex(name, classes, samples, task)
                                                    samples: Sample(key, path, label, split,
                                                                    target)

Adapters register themselves with :func:`register_dataset`;
:func:`latentcache.datasets.adapters.build_index` (which imports every adapter) is the one
public constructor. Indexing lists files only (no image decoding, no hashing): the encode
stage reads every file anyway and records its sha256 there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from latentcache.errors import ConfigError
from latentcache.images import IMAGE_EXTENSIONS

__all__ = [
    "TASKS",
    "Sample",
    "DatasetIndex",
    "DatasetAdapter",
    "DATASETS",
    "register_dataset",
    "default_data_root",
    "make_key",
    "IMAGE_EXTENSIONS",
]


TASKS = ("classification", "segmentation", "detection")


@dataclass(frozen=True)
class Sample:
    """One image of a dataset. ``key`` is unique in the dataset and contains no dot.

    ``label`` is the class of a classification sample (-1 for dense tasks). ``target`` is the
    relative path (POSIX, under the dataset root) of the file that holds a dense task's targets
    (a segmentation mask, an annotation file), or None.
    """

    key: str
    path: str  # relative to the dataset root, POSIX separators
    label: int
    split: str
    target: str | None = None

    def to_dict(self) -> dict:
        out = {"key": self.key, "path": self.path, "label": self.label, "split": self.split}
        if self.target is not None:
            out["target"] = self.target
        return out


@dataclass(frozen=True)
class DatasetIndex:
    """A listed dataset: class names, samples with their splits, and where they live."""

    name: str
    root: Path
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    options: dict = field(default_factory=dict)
    task: str = "classification"  # one of TASKS

    def __post_init__(self) -> None:
        keys = [s.key for s in self.samples]
        if len(set(keys)) != len(keys):
            dup = sorted({k for k in keys if keys.count(k) > 1})[:5]
            raise ConfigError(f"dataset {self.name!r} has duplicate sample keys: {dup}")
        if self.task not in TASKS:
            raise ConfigError(
                f'dataset {self.name!r}: task "{self.task}", should be one of {TASKS}'
            )
        if self.task != "classification":
            return
        for s in self.samples:
            if not 0 <= s.label < len(self.classes):
                raise ConfigError(
                    f"sample {s.key!r} has label {s.label}, should be in [0, {len(self.classes)})"
                )

    @property
    def split_names(self) -> list[str]:
        order = {"train": 0, "validate": 1, "test": 2}
        names = {s.split for s in self.samples}
        return sorted(names, key=lambda n: (order.get(n, 99), n))

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def sha256(self) -> str:
        """Identity of the listing (keys, paths, labels, splits, classes), not of the pixels."""
        payload = {
            "name": self.name,
            "classes": list(self.classes),
            "samples": [s.to_dict() for s in self.samples],
        }
        if self.task != "classification":  # classification listings keep their v1 identity
            payload["task"] = self.task
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class DatasetAdapter:
    """A registered dataset: how to list it and where a user gets it."""

    name: str
    index: Callable[..., DatasetIndex]  # index(root: Path, **options) -> DatasetIndex
    description: str
    download_url: str | None = None
    prepare: Callable[[Path], Path] | None = None  # makes a missing root (the demo set)


DATASETS: dict[str, DatasetAdapter] = {}


def register_dataset(
    name: str,
    *,
    description: str,
    download_url: str | None = None,
    prepare: Callable[[Path], Path] | None = None,
):
    """Decorator: register ``fn(root, **options) -> DatasetIndex`` under ``name``.

    ``prepare(root)``, when given, creates a missing root (a dataset generated locally).
    """

    def decorator(fn: Callable[..., DatasetIndex]) -> Callable[..., DatasetIndex]:
        DATASETS[name] = DatasetAdapter(name, fn, description, download_url, prepare)
        return fn

    return decorator


def default_data_root(name: str) -> Path:
    """``$LATENTCACHE_DATA/<name>`` or ``~/.cache/latentcache/datasets/<name>``."""
    base = os.environ.get("LATENTCACHE_DATA")
    if base:
        return Path(base).expanduser() / name
    return Path.home() / ".cache" / "latentcache" / "datasets" / name


_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-/]")


def make_key(relpath: str) -> str:
    """A WebDataset-safe key from a relative path: extension dropped, dots and odd chars -> '_'."""
    stem = relpath.rsplit(".", 1)[0] if "." in Path(relpath).name else relpath
    return _KEY_BAD.sub("_", stem.replace(os.sep, "/"))


def unique_keys(relpaths: Iterable[str]) -> list[str]:
    """Keys for ``relpaths``; where two stems collide (a.jpg, a.png) the extension is kept."""
    relpaths = list(relpaths)
    keys = [make_key(p) for p in relpaths]
    seen: dict[str, int] = {}
    for k in keys:
        seen[k] = seen.get(k, 0) + 1
    return [
        _KEY_BAD.sub("_", p.replace(os.sep, "/")) if seen[k] > 1 else k
        for p, k in zip(relpaths, keys, strict=True)
    ]

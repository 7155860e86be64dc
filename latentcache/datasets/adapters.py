"""Every dataset adapter, imported so that their ``@register_dataset`` decorators run, and the
lookup by name: :func:`get_dataset` and :func:`build_index`, the one public constructor."""

from __future__ import annotations

import os
from pathlib import Path

from latentcache.datasets import (
    coco,  # noqa: F401
    coco_json,  # noqa: F401  (the COCO box reader)
    demo,  # noqa: F401
    demo_det,  # noqa: F401
    demo_seg,  # noqa: F401
    imagefolder,  # noqa: F401
    minc,  # noqa: F401
    resisc45,  # noqa: F401
    rsscn7,  # noqa: F401
    segfolder,  # noqa: F401
    voc,  # noqa: F401
    voc_det,  # noqa: F401
)
from latentcache.datasets.base import DATASETS, DatasetAdapter, DatasetIndex, default_data_root
from latentcache.errors import ConfigError, DatasetNotFoundError
from latentcache.manifests import download_hint

__all__ = ["build_index", "get_dataset"]


def get_dataset(name: str) -> DatasetAdapter:
    if name not in DATASETS:
        raise ConfigError(f'Unknown dataset "{name}". Available: {sorted(DATASETS)}')
    return DATASETS[name]


def build_index(name: str, root: str | os.PathLike | None = None, **options) -> DatasetIndex:
    """List dataset ``name`` under ``root`` (default: :func:`default_data_root`)."""
    adapter = get_dataset(name)
    path = Path(root).expanduser() if root is not None else default_data_root(name)
    if not path.is_dir() and adapter.prepare is not None:
        adapter.prepare(path)
    if not path.is_dir():
        where = f" Download it from {adapter.download_url} and" if adapter.download_url else ""
        raise DatasetNotFoundError(
            f"{name} dataset not found at {path}.{where} pass its folder with --data-root "
            f"(or set LATENTCACHE_DATA to the folder that holds {name}/)."
            + download_hint(name, path)
        )
    return adapter.index(path, **options)

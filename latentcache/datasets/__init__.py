"""Dataset adapters (MINC-2500, RESISC-45, RSSCN7, image folders, the demo set) and their registry."""

from latentcache.datasets.adapters import build_index, get_dataset
from latentcache.datasets.base import (
    DATASETS,
    DatasetIndex,
    Sample,
    default_data_root,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "DatasetIndex",
    "Sample",
    "build_index",
    "default_data_root",
    "get_dataset",
    "register_dataset",
]

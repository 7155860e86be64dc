"""RSSCN7 (Zou et al. 2015): 7 scene classes x 400 images, 400x400, no official split.

::

    <root>/<class>/<letter>NNN.jpg         e.g. aGrass/a001.jpg, NNN = 001..400
                                           (or <root>/RSSCN7/ or <root>/RSSCN7-master/)
    data_manifests/rsscn7/classes.txt      aGrass bField cIndustry dRiverLake eForest
                                           fResident gParking: label = line index
    data_manifests/rsscn7/splits.json      seeded 80/10/10 split per class (scripts/make_splits.py)
                 │
                 ▼
    index(root) ──► DatasetIndex: train 2,240 / validate 280 / test 280

The file names are those of the dataset's GitHub repository (palewithout/RSSCN7). Listed
files that are missing are left out with a warning (all missing: an error); images on disk
that no list names are reported in the same warning and not indexed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from latentcache.datasets.base import DatasetIndex, register_dataset
from latentcache.datasets.imagefolder import index_listed_folder

__all__ = ["DOWNLOAD_URL", "index"]

logger = logging.getLogger(__name__)

DOWNLOAD_URL = "https://github.com/palewithout/RSSCN7"


@register_dataset(
    "rsscn7",
    description="RSSCN7 remote-sensing scenes: 7 classes x 400 images, 400x400; seeded "
    "80/10/10 split committed in data_manifests/rsscn7",
    download_url=DOWNLOAD_URL,
)
def index(root: Path) -> DatasetIndex:
    """List RSSCN7 under ``root`` (class folders, or ``RSSCN7[-master]/`` holding them)."""
    return index_listed_folder(
        "rsscn7",
        Path(root),
        wrappers=("RSSCN7", "RSSCN7-master"),
        download_url=DOWNLOAD_URL,
        log=logger,
    )

"""NWPU-RESISC45 (Cheng et al. 2017): 45 scene classes x 700 images, 256x256, no official split.

::

    <root>/<class>/<class>_NNN.jpg         NNN = 001..700 (or <root>/NWPU-RESISC45/<class>/...)
    data_manifests/resisc45/classes.txt    45 names, sorted: label = line index
    data_manifests/resisc45/splits.json    seeded 80/10/10 split per class (scripts/make_splits.py)
                 │
                 ▼
    index(root) ──► DatasetIndex: train 25,200 / validate 3,150 / test 3,150

Listed files that are missing are left out with a warning (all missing: an error); images
on disk that no list names are reported in the same warning and not indexed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from latentcache.datasets.base import DatasetIndex, register_dataset
from latentcache.datasets.imagefolder import index_listed_folder

__all__ = ["DOWNLOAD_URL", "index"]

logger = logging.getLogger(__name__)

DOWNLOAD_URL = "https://1drv.ms/u/s!AmgKYzARBl5ca3HNaHIlzp_IXjs"
DOWNLOAD_PAGE = "http://www.escience.cn/people/JunweiHan/NWPU-RESISC45.html"


@register_dataset(
    "resisc45",
    description="NWPU-RESISC45 remote-sensing scenes: 45 classes x 700 images, 256x256; "
    "seeded 80/10/10 split committed in data_manifests/resisc45 (official download page: "
    f"{DOWNLOAD_PAGE})",
    download_url=DOWNLOAD_URL,
)
def index(root: Path) -> DatasetIndex:
    """List RESISC-45 under ``root`` (class folders, or ``NWPU-RESISC45/`` holding them)."""
    return index_listed_folder(
        "resisc45", Path(root), wrappers=("NWPU-RESISC45",), download_url=DOWNLOAD_URL, log=logger
    )

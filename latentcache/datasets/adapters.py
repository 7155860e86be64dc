"""Imports every adapter module so that their @register_dataset decorators run."""

from latentcache.datasets import (
    coco,  # noqa: F401
    coco_json,  # noqa: F401  (the COCO box reader)
    demo,  # noqa: F401
    demo_seg,  # noqa: F401
    imagefolder,  # noqa: F401
    minc,  # noqa: F401
    resisc45,  # noqa: F401
    rsscn7,  # noqa: F401
    segfolder,  # noqa: F401
    voc,  # noqa: F401
    voc_det,  # noqa: F401
)

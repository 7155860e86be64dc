"""Tasks: what a store's targets are, and what is learned and measured from them.

A task is one small unit, registered once (:func:`register_task`), that the store, the
loader, the training loop and the CLI ask instead of branching on the task's name::

    Task (tasks/base.py)                     classification.py   segmentation.py
      name, labelled, manifest_entry()       label per image     uint8 mask, 255 = ignore
      store: read_targets  (encode, once)    -                   the dataset's mask file
             zarr_arrays   (per-row arrays)  -                   mask (R, H, W) uint8, fill 255
             wds_members / parse_members     -                   <key>.mask.png (mode L) and
             read_member (the loader's)                          <key>.mask.npy.zst
      loader: collate_targets (worker)       label (B,)          mask on the canvas (B, 16h, 16w)
              target_layout (pooled, --cache) -                   mask, image_size, canvas_offset
      augment: map_targets (same crop/flip)  -                   crop 16x cells, mirror
      models: default_model, model_task      cresnet39           cresnet51-d
      loss, make_meter (torchmetrics),       cross entropy,      cross entropy (ignore 255),
      summary, score_key                     top-1/top-5         mIoU, per-class IoU, pixel acc.
      report: report_section                 accuracy_vs_bpp     miou_vs_bpp, picture sheet
                                                                 (image|decoded|truth|prediction)

The store is the same for every task: latents, bitstreams, ``image_size`` and every row's
``canvas_offset`` (where the unpadded image sits on the codec's padded canvas); a task adds
its target arrays (Zarr) and members (WebDataset), each read back as hostile input (dtype,
shape and sizes checked before anything is decoded, nothing unpickled).

A third task (detection) subclasses :class:`~latentcache.tasks.base.Task`, sets ``name``
(one of ``datasets.base.TASKS``) and overrides the hooks above, then registers itself
here with ``@register_task``; its models register with ``task="detection"`` in
``latentcache.train.models``; its report section (``latentcache.report.detection``: mAP and
AP50 against bpp, boxes drawn on the image) comes from ``report_section``. Nothing outside
this package names a task.
"""

from __future__ import annotations

from latentcache.tasks import (  # noqa: E402,F401  (registration)
    classification,
    detection,
    segmentation,
)
from latentcache.tasks.base import TASKS, Task, get_task, register_task, store_task

__all__ = ["TASKS", "Task", "get_task", "register_task", "store_task"]

"""Object detection: a variable number of boxes per image, pixel xyxy on the unpadded image,
with contiguous category ids and the crowd (COCO) or difficult (VOC) flag.

::

    encode   the sample's annotation (VOC XML, COCO JSON + image id) ─► load_boxes: checked
             against the decoded image (outside, negative size, unknown category, NaN:
             the sample fails with the reason; zero-sized boxes left out)
    Zarr     ragged through offsets, as the bitstreams: ragged_offsets (R, 2) int64;
             per shard boxes (N, 4) float32, box_labels (N,) int32, box_iscrowd (N,) uint8
    WDS      <key>.boxes.json  {"boxes", "labels", "iscrowd"}: plain webdataset's JSON decoder
    manifest task: {"name": "detection", "category_ids": the dataset's original ids,
             parallel to dataset.classes}
    loader   per image a target dict: boxes, labels, iscrowd, image_size, canvas_offset
             (every row checked again: inside its image, non-negative category, finite)
    augment  the latents' crop in cells and flip, mapped onto the boxes through the canvas
             offset (train/box_augment.py): shifted, clipped, vanished boxes dropped, mirrored
    models   Faster R-CNN on latents (train/models/detectors.py), default fasterrcnn-cresnet51
    metric   COCO mAP@[.5:.95], AP50, AP75, per class (torchmetrics, faster-coco-eval)

Evaluation is on whole images (no crop, no flip).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from latentcache.datasets.boxes import BoxTargets, load_boxes
from latentcache.errors import SampleError
from latentcache.tasks.base import Task, register_task
from latentcache.tasks.box_columns import BOXES_MEMBER, boxes_member, parse_boxes_member

__all__ = ["DetectionTask", "MAX_CATEGORIES"]

MAX_CATEGORIES = 1 << 16  # a box label at or above this is refused when read back


def _arrays(t: BoxTargets) -> dict[str, np.ndarray]:
    return {
        "boxes": t.boxes.astype(np.float32).reshape(-1, 4),
        "box_labels": t.labels.astype(np.int32),
        "box_iscrowd": t.iscrowd.astype(np.uint8),
    }


def _record(targets: Mapping[str, np.ndarray]) -> dict:
    return {
        "boxes": np.asarray(targets["boxes"], dtype=np.float64).reshape(-1, 4).tolist(),
        "labels": np.asarray(targets["box_labels"]).reshape(-1).tolist(),
        "iscrowd": np.asarray(targets["box_iscrowd"]).reshape(-1).tolist(),
    }


@register_task
class DetectionTask(Task):
    name = "detection"
    labelled = False
    default_model = "fasterrcnn-cresnet51"
    member_suffixes = (BOXES_MEMBER,)
    target_names = ("boxes", "box_labels", "box_iscrowd")
    ragged_targets = {
        "boxes": ("float32", (4,)),
        "box_labels": ("int32", ()),
        "box_iscrowd": ("uint8", ()),
    }
    pads_latents = True
    score_key = "map"
    score_label = "mAP"
    record_keys = ("map", "map_50", "map_75")
    target_keys = ()

    def manifest_entry(self, options: Mapping | None = None) -> dict:
        return {"name": self.name, "category_ids": list((options or {}).get("category_ids", []))}

    # ---------------------------------------------------------------- store

    def read_targets(self, target: str | None, root: Path, image_hw: tuple[int, int]) -> dict:
        return _arrays(load_boxes(Path(root), target, image_hw))

    def wds_members(self, targets: Mapping[str, np.ndarray]) -> dict[str, bytes]:
        record = BoxTargets(
            np.asarray(targets["boxes"], dtype=np.float32).reshape(-1, 4),
            np.asarray(targets["box_labels"], dtype=np.int64).reshape(-1),
            np.asarray(targets["box_iscrowd"]).astype(bool).reshape(-1),
        )
        return {BOXES_MEMBER: boxes_member(record)}

    def parse_members(
        self, raw: Mapping[str, bytes], image_hw: tuple[int, int], max_hw: tuple[int, int]
    ) -> dict[str, np.ndarray]:
        if BOXES_MEMBER not in raw:
            raise ValueError(f"missing member {BOXES_MEMBER}")
        try:
            return _arrays(parse_boxes_member(raw[BOXES_MEMBER], image_hw, MAX_CATEGORIES))
        except SampleError as exc:
            raise ValueError(f"{BOXES_MEMBER}: {exc}") from None

    # ---------------------------------------------------------------- training

    def collate_targets(self, samples: list[dict], latent_hw: tuple[int, int]) -> dict:
        import torch

        targets = []
        for s in samples:
            hw = tuple(int(v) for v in s["image_size"])
            try:
                t = BoxTargets.from_dict(_record(s), hw, MAX_CATEGORIES)
            except SampleError as exc:
                raise ValueError(f"{s.get('key', '?')}: {exc}") from None
            targets.append({
                "boxes": torch.from_numpy(t.boxes),
                "labels": torch.from_numpy(t.labels),
                "iscrowd": torch.from_numpy(t.iscrowd.astype(np.int64)),
                "image_size": hw,
                "canvas_offset": tuple(int(v) for v in s["canvas_offset"]),
            })  # fmt: skip
        label = torch.full((len(samples),), -1, dtype=torch.long)
        return {"label": label, "targets": targets}

    def map_targets(self, batch: dict, params, crop: int | None, latent_hw) -> list[dict]:
        """The boxes after the latents' crop and flip: ``params`` = per-sample (top, left,
        flipped) in latent cells (top/left None: flip only over the whole latent; ``params``
        None: nothing done), ``crop`` the crop's size in cells, ``latent_hw`` the latents'
        (h, w) before it."""
        from latentcache.train.box_augment import crop_flip_batch

        if params is None:
            return batch["targets"]
        top, left, flipped = params
        size_hw = tuple(latent_hw) if top is None else (int(crop), int(crop))
        return crop_flip_batch(batch["targets"], top, left, flipped, size_hw)

    def targets_to(self, batch: dict, device) -> dict:
        """Each image's target dict with its tensors on ``device``."""
        moved = [
            {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in t.items()}
            for t in batch["targets"]
        ]
        return {"targets": moved}

    def forward(self, model, xs: list, targets, train: bool):
        """Training: torchvision's dict of losses; evaluation: boxes, labels and scores per
        image, in the image's pixels."""
        return model(*xs, targets=targets)

    def loss(self, outputs, targets, label_smoothing: float = 0.0):
        """A detector computes its own losses (torchvision's dict); their sum."""
        return sum(v.float() for v in outputs.values())

    def eval_loss(self, outputs, targets) -> None:
        """A detector in evaluation mode returns boxes, not losses."""
        return None

    def hits(self, outputs, targets) -> tuple:
        """No training accuracy for detection (the losses are the training figures)."""
        import torch

        return torch.zeros((), dtype=torch.long), 0

    def headline(self, result: Mapping) -> tuple[str, Mapping]:
        line = (
            f"mAP {result['map']:.4f}  AP50 {result['map_50']:.4f}  AP75 {result['map_75']:.4f}"
            f"  n={result['count']}"
        )
        return line, result["per_class_ap"]

    def make_meter(self, num_classes: int):
        from latentcache.train.detection_metric import DetectionMeter

        return DetectionMeter(num_classes)

    # ---------------------------------------------------------------- report

    def report_section(self):
        from latentcache.report.detection import SECTION

        return SECTION

"""COCO detection metrics through torchmetrics' ``MeanAveragePrecision`` (the faster-coco-eval
backend: the COCO evaluation, not a re-implementation)::

    update(predictions, targets)   per image: boxes (N, 4) pixel xyxy, scores, labels
                                   (contiguous ids) / boxes, labels, iscrowd (COCO crowd or
                                   VOC difficult: matched boxes are ignored, as COCOeval does)
    summary(classes) ──► {"map": mAP@[.5:.95], "map_50", "map_75", "map_small/medium/large",
                          "mar_100", "per_class_ap": {name: AP or None (no box of it)}}

Under DDP torchmetrics gathers every rank's images before computing (``compute`` syncs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["DetectionMeter", "SUMMARY_KEYS"]

SUMMARY_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100")


def _target(t: dict) -> dict:
    out = {"boxes": t["boxes"].float().reshape(-1, 4), "labels": t["labels"].long().reshape(-1)}
    if "iscrowd" in t:
        out["iscrowd"] = t["iscrowd"].long().reshape(-1)
    return out


def _prediction(p: dict) -> dict:
    return {
        "boxes": p["boxes"].detach().float().reshape(-1, 4),
        "scores": p["scores"].detach().float().reshape(-1),
        "labels": p["labels"].detach().long().reshape(-1),
    }


class DetectionMeter:
    """Accumulates a split's predictions; see the module docstring."""

    def __init__(self, num_classes: int, backend: str = "faster_coco_eval") -> None:
        from torchmetrics.detection import MeanAveragePrecision

        self.num_classes = num_classes
        self.metric = MeanAveragePrecision(
            box_format="xyxy", iou_type="bbox", class_metrics=True, backend=backend
        )
        self.loss_sum, self.batches, self.images = 0.0, 0, 0

    def update(self, predictions: Sequence[dict], targets: Sequence[dict], loss=None) -> None:
        cpu = torch.device("cpu")
        preds = [{k: v.to(cpu) for k, v in _prediction(p).items()} for p in predictions]
        gts = [{k: v.to(cpu) for k, v in _target(t).items()} for t in targets]
        self.metric.update(preds, gts)
        self.images += len(gts)
        if loss is not None:
            self.loss_sum += float(loss)
            self.batches += 1

    def all_reduce(self) -> None:
        """No-op: torchmetrics gathers the ranks' states in :meth:`summary`."""

    def summary(self, classes: Sequence[str] | None = None) -> dict:
        result = self.metric.compute()
        names = list(classes) if classes is not None else [str(i) for i in range(self.num_classes)]
        out = {k: float(result[k]) for k in SUMMARY_KEYS}
        per_class: dict[str, float | None] = dict.fromkeys(names)
        observed = result["classes"].reshape(-1).tolist()
        for c, ap in zip(observed, result["map_per_class"].reshape(-1).tolist(), strict=True):
            if 0 <= int(c) < len(names):
                per_class[names[int(c)]] = None if ap < 0 else float(ap)
        out["per_class_ap"] = per_class
        out["count"] = self.images  # this rank's images
        if self.batches:
            out["loss"] = self.loss_sum / self.batches
        return out

    def reset(self) -> None:
        self.metric.reset()
        self.loss_sum, self.batches, self.images = 0.0, 0, 0

"""Segmentation metrics over a whole split (the VOC protocol), from torchmetrics.

::

    logits (B, K, h, w) ─► bilinear to the target canvas (B, H, W) ─► argmax
      └► MulticlassJaccardIndex(average="none", ignore_index=255): one confusion matrix
         accumulated over every pixel of the split (255 ignored), summed over DDP ranks
    summary: miou (mean over the classes present in prediction or ground truth),
             per_class IoU (None for a class absent from both), pixel_accuracy, loss, count
"""

from __future__ import annotations

import torch

from latentcache.datasets.masks import IGNORE_INDEX

__all__ = ["SegmentationMeter", "upsample"]


def upsample(logits: torch.Tensor, size) -> torch.Tensor:
    """(B, K, h, w) logits -> (B, K, *size), bilinear (as DeepLab scores them)."""
    import torch.nn.functional as F

    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


class SegmentationMeter:
    """Accumulates the split's confusion matrix (torchmetrics) and the summed loss."""

    def __init__(self, num_classes: int) -> None:
        from torchmetrics.classification import MulticlassJaccardIndex

        self.num_classes = num_classes
        self.jaccard = MulticlassJaccardIndex(
            num_classes, average="none", ignore_index=IGNORE_INDEX, validate_args=False
        )
        self.loss_sum, self.images = 0.0, 0

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: float | None = None):
        """``logits`` (B, K, h, w) at any resolution, ``targets`` (B, H, W) uint8 (255 ignored)."""
        pred = upsample(logits.detach().float(), targets.shape[-2:]).argmax(1)
        self.jaccard.to(pred.device).update(pred, targets.long())
        if loss is not None:
            self.loss_sum += float(loss) * len(targets)
        self.images += len(targets)

    def all_reduce(self) -> None:
        """Nothing to do: torchmetrics sums the confusion matrix over ranks in compute()."""

    @property
    def confusion(self) -> torch.Tensor:
        """(K, K) int64, rows: ground truth."""
        return self.jaccard.confmat.detach().cpu().long()

    def summary(self, classes: list[str] | None = None) -> dict:
        iou = self.jaccard.compute().cpu().double()
        confusion = self.confusion
        present = (confusion.sum(0) + confusion.sum(1)) > 0
        names = classes or [str(i) for i in range(self.num_classes)]
        pixels = int(confusion.sum())
        return {
            "miou": float(iou[present].mean()) if bool(present.any()) else 0.0,
            "per_class_iou": {
                n: (float(v) if p else None)
                for n, v, p in zip(names, iou.tolist(), present.tolist(), strict=True)
            },
            "pixel_accuracy": float(confusion.diag().sum()) / max(pixels, 1),
            "loss": self.loss_sum / max(self.images, 1),
            "count": self.images,
            "pixels": pixels,
            "confusion": confusion.tolist(),
        }

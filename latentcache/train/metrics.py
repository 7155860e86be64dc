"""Classification metrics accumulated over batches (and summed over DDP ranks):
loss, top-1, top-5, per-class accuracy and the confusion matrix (rows: true class)."""

from __future__ import annotations

import torch

__all__ = ["ClassificationMeter"]


class ClassificationMeter:
    """Accumulates a confusion matrix, top-5 hits and the summed loss on the CPU."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.top5_hits = 0
        self.loss_sum = 0.0

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss: float | None = None) -> None:
        """``logits`` (B, classes), ``labels`` (B,); ``loss`` is the batch mean."""
        logits, labels = logits.detach().float().cpu(), labels.cpu()
        pred = logits.argmax(1)
        idx = labels * self.num_classes + pred
        self.confusion += torch.bincount(idx, minlength=self.num_classes**2).view_as(self.confusion)
        k = min(5, self.num_classes)
        self.top5_hits += int((logits.topk(k, 1).indices == labels[:, None]).any(1).sum())
        if loss is not None:
            self.loss_sum += float(loss) * len(labels)

    def all_reduce(self) -> None:
        """Sum the counts over the DDP ranks (no-op outside a process group)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        flat = torch.cat(
            [
                self.confusion.flatten().double(),
                torch.tensor([self.top5_hits, self.loss_sum]).double(),
            ]
        )
        dist.all_reduce(flat)
        n = self.num_classes**2
        self.confusion = flat[:n].round().long().view(self.num_classes, self.num_classes)
        self.top5_hits, self.loss_sum = int(flat[n].round()), float(flat[n + 1])

    def summary(self, classes: list[str] | None = None) -> dict:
        """``top1``, ``top5`` (fractions), ``loss``, ``count``, ``per_class``, ``confusion``."""
        n = max(self.count, 1)
        per_true = self.confusion.sum(1).clamp_min(1)
        per_class = (self.confusion.diag().double() / per_true).tolist()
        names = classes or [str(i) for i in range(self.num_classes)]
        return {
            "top1": float(self.confusion.diag().sum()) / n,
            "top5": self.top5_hits / n,
            "loss": self.loss_sum / n,
            "count": self.count,
            "per_class": dict(zip(names, per_class, strict=True)),
            "confusion": self.confusion.tolist(),
        }

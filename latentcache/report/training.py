"""Plots of a training run: loss/accuracy curves from ``metrics.jsonl`` and the confusion
matrix of an evaluation. matplotlib is imported lazily, with the Agg backend."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["read_metrics", "plot_training_curves", "plot_confusion_matrix"]


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The per-epoch records of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(metrics_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Loss (train, eval) and top-1/top-5 accuracy per epoch, side by side."""
    records = read_metrics(metrics_path)
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in records]
    for ax, keys in (
        (ax_loss, ("train_loss", "eval_loss")),
        (ax_acc, ("train_top1", "eval_top1", "eval_top5", "eval_miou", "eval_pixel_accuracy")),
    ):
        for key in keys:
            points = [(e, r[key]) for e, r in zip(epochs, records, strict=True) if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_ylabel("cross entropy")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    return _save(fig, out)


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], out: str | os.PathLike
) -> Path:
    """Row-normalized confusion matrix (rows: true class), counts written when few classes."""
    import numpy as np

    counts = np.asarray(confusion, dtype=np.float64)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    plt = _pyplot()
    n = len(classes)
    size = min(4 + 0.35 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90, fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, out)


def _save(fig, out: str | os.PathLike) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out

"""Each task's report section: the scores its rate plot draws against bpp, and its pictures.

::

    Task.report_section() ─► ReportSection(name, title, scores, plot, pictures, sheet)
        scores     eval result keys drawn against mean true bpp (``rate_accuracy.SCORES``)
        plot       the plot's file name in the report folder
        pictures   (batch, outputs, targets) ─► one row per sample: the truth and the
                   prediction at image size (no pixels yet); None: the task has no pictures
        sheet      (rows, classes, path, title) ─► the PNG

The pictures of an evaluation: :mod:`latentcache.report.pictures`. Nothing here imports the
store or torch: the tasks import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ReportSection", "CLASSIFICATION"]


@dataclass(frozen=True)
class ReportSection:
    name: str
    title: str
    scores: tuple[str, ...]
    plot: str
    pictures: Callable | None = None
    sheet: Callable | None = None


CLASSIFICATION = ReportSection(
    "classification", "Classification", ("top1", "top5"), "accuracy_vs_bpp.png"
)

"""Classification: one class label per image, the store's ``label`` array and ``.cls`` member.

Everything is the :class:`~latentcache.tasks.base.Task` default; the meter is
:class:`latentcache.train.metrics.ClassificationMeter` (top-1, top-5, per class, confusion).
"""

from __future__ import annotations

from latentcache.tasks.base import Task, register_task

__all__ = ["ClassificationTask"]


@register_task
class ClassificationTask(Task):
    name = "classification"
    default_model = "cresnet39"
    min_classes = 2  # one class leaves nothing to tell apart

    def make_meter(self, num_classes: int):
        from latentcache.train.metrics import ClassificationMeter

        return ClassificationMeter(num_classes)

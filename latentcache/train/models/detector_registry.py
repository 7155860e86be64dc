"""Detectors in the model registry (``registry.py``): :func:`register_detector` registers a
factory there with ``task="detection"``, so ``latentcache train`` finds a detector as it
finds a classifier or a segmenter; :data:`DETECTORS` is the registry's detection part.

A detector's ``forward(*xs, targets)`` takes the store fields it declares (``model.inputs``:
``("y_hat",)`` or ``("image",)``) and one dict per image with its ``image_size`` (H, W) and
``canvas_offset`` (pad_top, pad_left), plus ``boxes`` (N, 4) pixel xyxy on the unpadded
image and ``labels`` (N,) contiguous ids in training. Training returns torchvision's dict of
losses; evaluation one dict per image: ``boxes`` in the image's pixels, ``labels``
(contiguous ids, no background), ``scores``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from torch import nn

from latentcache.train.models.registry import (
    CLASSIFIERS,
    ClassifierEntry,
    create_classifier,
    register_classifier,
)

__all__ = ["DETECTORS", "register_detector", "create_detector", "list_detectors", "TASK"]

TASK = "detection"


class _Detectors(Mapping):
    """The registry's detectors, read live."""

    def __getitem__(self, name: str) -> ClassifierEntry:
        entry = CLASSIFIERS.get(name)
        if entry is None or entry.task != TASK:
            raise KeyError(name)
        return entry

    def __iter__(self) -> Iterator[str]:
        return (n for n, e in CLASSIFIERS.items() if e.task == TASK)

    def __len__(self) -> int:
        return sum(1 for _ in self)


DETECTORS: Mapping[str, ClassifierEntry] = _Detectors()


def register_detector(name: str, *, inputs: tuple[str, ...], imagenet: bool = False) -> Callable:
    """Register ``factory(in_channels, num_classes, **kw) -> nn.Module`` under ``name``;
    ``num_classes`` counts the dataset's categories (no background), one or more."""
    return register_classifier(name, inputs=inputs, imagenet=imagenet, task=TASK, min_classes=1)


def create_detector(name: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a registered detector; ``in_channels``: M of one latent input (3 for images)."""
    if name not in DETECTORS:
        raise KeyError(f'Unknown detector "{name}". Available: {list_detectors()}')
    return create_classifier(name, in_channels, num_classes, **kwargs)


def list_detectors() -> list[str]:
    return sorted(DETECTORS)

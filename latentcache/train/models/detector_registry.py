"""The detector registry: a plain dict filled by :func:`register_detector`, as the classifier
registry is (``registry.py``); :func:`create_detector` is the one public constructor.

A detector's ``forward(*xs, targets)`` takes the store fields it declares (``model.inputs``:
``("y_hat",)`` or ``("image",)``) and one dict per image with its ``image_size`` (H, W) and
``canvas_offset`` (pad_top, pad_left), plus ``boxes`` (N, 4) pixel xyxy on the unpadded
image and ``labels`` (N,) contiguous ids in training. Training returns torchvision's dict of
losses; evaluation one dict per image: ``boxes`` in the image's pixels, ``labels``
(contiguous ids, no background), ``scores``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["DETECTORS", "DetectorEntry", "register_detector", "create_detector", "list_detectors"]

_KNOWN_INPUTS = ("y_hat", "scales_hat", "image")


@dataclass(frozen=True)
class DetectorEntry:
    """A registered detector: factory, inputs, and whether its trunk can start from ImageNet."""

    name: str
    factory: Callable[..., nn.Module]
    inputs: tuple[str, ...]
    imagenet: bool = False

    @property
    def latent(self) -> bool:
        return "image" not in self.inputs

    @property
    def summary(self) -> str:
        return (self.factory.__doc__ or "").strip().splitlines()[0] if self.factory.__doc__ else ""


DETECTORS: dict[str, DetectorEntry] = {}


def register_detector(name: str, *, inputs: tuple[str, ...], imagenet: bool = False) -> Callable:
    """Register ``factory(in_channels, num_classes, **kw) -> nn.Module`` under ``name``;
    ``num_classes`` counts the dataset's categories (no background)."""
    bad = [i for i in inputs if i not in _KNOWN_INPUTS]
    if bad:
        raise ValueError(f"Unknown inputs {bad} for {name!r}; valid: {list(_KNOWN_INPUTS)}")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in DETECTORS:
            raise ValueError(f'Detector "{name}" is already registered')
        DETECTORS[name] = DetectorEntry(name, factory, tuple(inputs), imagenet)
        return factory

    return decorator


def create_detector(name: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a registered detector; ``in_channels``: M of one latent input (3 for images)."""
    # the registry is full: latentcache.train.models (imported before this module) imports
    # detectors, whose decorators fill it
    if name not in DETECTORS:
        raise KeyError(f'Unknown detector "{name}". Available: {sorted(DETECTORS)}')
    if in_channels < 1 or num_classes < 1:
        raise ValueError(
            f"in_channels={in_channels} and num_classes={num_classes}: both should be >= 1"
        )
    entry = DETECTORS[name]
    model = entry.factory(in_channels, num_classes, **kwargs)
    if not hasattr(model, "inputs"):
        model.inputs = entry.inputs
    if not hasattr(model, "initialised_from"):
        model.initialised_from = {"kind": "random", "reason": f"{name} has no pretrained weights"}
    return model


def list_detectors() -> list[str]:
    return sorted(DETECTORS)

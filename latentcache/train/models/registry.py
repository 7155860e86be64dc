"""The classifier registry: a plain dict filled by :func:`register_classifier`.

Every classifier declares the store fields it takes, in the order its ``forward`` takes
them (``model.inputs``): ``("y_hat",)``, ``("y_hat", "scales_hat")`` or ``("image",)`` for
the pixel baseline. :func:`create_classifier` is the one public constructor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = [
    "CLASSIFIERS",
    "LATENT_INPUTS",
    "ClassifierEntry",
    "register_classifier",
    "create_classifier",
    "list_classifiers",
]

LATENT_INPUTS = ("y_hat", "scales_hat")
_KNOWN_INPUTS = (*LATENT_INPUTS, "image")


@dataclass(frozen=True)
class ClassifierEntry:
    """A registered classifier: its factory, the inputs it takes by default, and whether its
    trunk can start from ImageNet weights (``pretrained`` is then one of its arguments)."""

    name: str
    factory: Callable[..., nn.Module]
    inputs: tuple[str, ...]
    imagenet: bool = False
    task: str = "classification"  # the store task it learns (latentcache.tasks)

    @property
    def latent(self) -> bool:
        """Trains on a latent store (else: the pixel baseline, trained on images)."""
        return all(i in LATENT_INPUTS for i in self.inputs)

    @property
    def summary(self) -> str:
        return (self.factory.__doc__ or "").strip().splitlines()[0] if self.factory.__doc__ else ""


CLASSIFIERS: dict[str, ClassifierEntry] = {}


def register_classifier(
    name: str, *, inputs: tuple[str, ...], imagenet: bool = False, task: str = "classification"
) -> Callable:
    """Register ``factory(in_channels, num_classes, **kw) -> nn.Module`` under ``name``;
    ``task``: what it predicts (classification: (B, K) logits; segmentation: (B, K, h, w))."""
    bad = [i for i in inputs if i not in _KNOWN_INPUTS]
    if bad:
        raise ValueError(f"Unknown inputs {bad} for {name!r}; valid: {list(_KNOWN_INPUTS)}")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in CLASSIFIERS:
            raise ValueError(f'Classifier "{name}" is already registered')
        CLASSIFIERS[name] = ClassifierEntry(name, factory, tuple(inputs), imagenet, task)
        return factory

    return decorator


def create_classifier(name: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a registered classifier; ``in_channels`` is M, the channels of one input.

    The returned module carries ``inputs`` (tuple of store fields its forward takes).
    """
    if name not in CLASSIFIERS:
        raise KeyError(f'Unknown classifier "{name}". Available: {sorted(CLASSIFIERS)}')
    if in_channels < 1 or num_classes < 2:
        raise ValueError(
            f"in_channels={in_channels} and num_classes={num_classes}: need in_channels >= 1 "
            "and num_classes >= 2"
        )
    entry = CLASSIFIERS[name]
    model = entry.factory(in_channels, num_classes, **kwargs)
    if not hasattr(model, "inputs"):
        model.inputs = entry.inputs
    if not hasattr(model, "initialised_from"):
        model.initialised_from = {"kind": "random", "reason": f"{name} has no pretrained weights"}
    return model


def list_classifiers(task: str | None = "classification") -> list[str]:
    """Sorted names of the registered models for ``task`` (None: every task)."""
    return sorted(n for n, e in CLASSIFIERS.items() if task is None or e.task == task)

"""The classifier registry: a plain dict filled by :func:`register_classifier`.

Every classifier declares the store fields it takes, in the order its ``forward`` takes
them (``model.inputs``): ``("y_hat",)``, ``("y_hat", "scales_hat")`` or ``("image",)`` for
the pixel baseline, or :data:`STORE_INPUTS`: whatever latents the store has (its manifest's
``inputs``: y_hat alone for the factorized prior, + scales_hat, + means_hat), passed to the
factory as ``inputs=``. :func:`resolve_inputs` is that rule, for any registry of models;
:func:`create_classifier` is the one public constructor.
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
    "resolve_inputs",
    "STORE_INPUTS",
    "list_classifiers",
]

LATENT_INPUTS = ("y_hat", "scales_hat", "means_hat")
_KNOWN_INPUTS = (*LATENT_INPUTS, "image")
STORE_INPUTS = "store"  # a model that takes every latent its store has, one branch each
LEGACY_INPUTS = ("y_hat", "scales_hat")  # what a store without recorded inputs has


def resolve_inputs(
    name: str, declared, store_inputs=None, kwargs: dict | None = None
) -> tuple[str, ...]:
    """The inputs model ``name`` takes from a store with ``store_inputs``: its ``inputs=``
    option, else the store's (``declared`` is STORE_INPUTS) or its declared ones; refused in
    one line when the store lacks one of them."""
    store = tuple(store_inputs or LEGACY_INPUTS)
    chosen = (kwargs or {}).get("inputs")
    inputs = tuple(chosen) if chosen else store if declared == STORE_INPUTS else tuple(declared)
    missing = [i for i in inputs if i in LATENT_INPUTS and i not in store]
    if missing:
        from latentcache.errors import ConfigError

        raise ConfigError(
            f"{name} takes {list(inputs)}, but the store has only {list(store)} "
            f"(no {', '.join(missing)}): choose --model-opt inputs=... among them"
        )
    return inputs


@dataclass(frozen=True)
class ClassifierEntry:
    """A registered classifier: its factory, the inputs it takes by default, and whether its
    trunk can start from ImageNet weights (``pretrained`` is then one of its arguments)."""

    name: str
    factory: Callable[..., nn.Module]
    inputs: tuple[str, ...] | str  # or STORE_INPUTS
    imagenet: bool = False
    task: str = "classification"  # the store task it learns (latentcache.tasks)
    min_classes: int = 2  # a detector finds one category; a classifier tells two apart

    @property
    def latent(self) -> bool:
        """Trains on a latent store (else: the pixel baseline, trained on images)."""
        return self.inputs == STORE_INPUTS or all(i in LATENT_INPUTS for i in self.inputs)

    @property
    def summary(self) -> str:
        return (self.factory.__doc__ or "").strip().splitlines()[0] if self.factory.__doc__ else ""


CLASSIFIERS: dict[str, ClassifierEntry] = {}


def register_classifier(
    name: str,
    *,
    inputs: tuple[str, ...] | str,
    imagenet: bool = False,
    task: str = "classification",
    min_classes: int = 2,
) -> Callable:
    """Register ``factory(in_channels, num_classes, **kw) -> nn.Module`` under ``name``;
    ``task``: what it predicts (classification: (B, K) logits; segmentation: (B, K, h, w);
    detection: losses in training, boxes per image in evaluation)."""
    bad = [] if inputs == STORE_INPUTS else [i for i in inputs if i not in _KNOWN_INPUTS]
    if bad:
        raise ValueError(f"Unknown inputs {bad} for {name!r}; valid: {list(_KNOWN_INPUTS)}")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in CLASSIFIERS:
            raise ValueError(f'Classifier "{name}" is already registered')
        declared = inputs if inputs == STORE_INPUTS else tuple(inputs)
        CLASSIFIERS[name] = ClassifierEntry(name, factory, declared, imagenet, task, min_classes)
        return factory

    return decorator


def create_classifier(
    name: str, in_channels: int, num_classes: int, store_inputs=None, **kwargs
) -> nn.Module:
    """Build a registered classifier; ``in_channels`` is M, the channels of one input;
    ``store_inputs``: the store's ``inputs`` (None: y_hat and scales_hat, as stores before).

    The returned module carries ``inputs`` (tuple of store fields its forward takes).
    """
    if name not in CLASSIFIERS:
        raise KeyError(f'Unknown classifier "{name}". Available: {sorted(CLASSIFIERS)}')
    entry = CLASSIFIERS[name]
    if in_channels < 1 or num_classes < entry.min_classes:
        raise ValueError(
            f"in_channels={in_channels} and num_classes={num_classes}: need in_channels >= 1 "
            f"and num_classes >= {entry.min_classes}"
        )
    if entry.latent:
        inputs = resolve_inputs(name, entry.inputs, store_inputs, kwargs)
        if entry.inputs == STORE_INPUTS or "inputs" in kwargs:
            kwargs = {**kwargs, "inputs": inputs}
    model = entry.factory(in_channels, num_classes, **kwargs)
    if not hasattr(model, "inputs"):
        model.inputs = entry.inputs
    if not hasattr(model, "initialised_from"):
        model.initialised_from = {"kind": "random", "reason": f"{name} has no pretrained weights"}
    return model


def list_classifiers(task: str | None = "classification") -> list[str]:
    """Sorted names of the registered models for ``task`` (None: every task)."""
    return sorted(n for n, e in CLASSIFIERS.items() if task is None or e.task == task)

"""``latentcache train --list-models``: each registered model, its inputs and its size.

::

    CLASSIFIERS ─► build each (random init, nothing downloaded) for M channels, K classes
      ─► "name  inputs  parameters  what it is"   (resnet50: the pixel baseline, on images)
"""

from __future__ import annotations

from latentcache.train.models.registry import CLASSIFIERS, create_classifier

__all__ = ["describe_models", "count_parameters"]


def _build(name: str, channels: int, num_classes: int, store_inputs=None):
    entry = CLASSIFIERS[name]
    kwargs = {"pretrained": False} if entry.imagenet else {}
    channels = channels if entry.latent else 3
    return create_classifier(name, channels, num_classes, store_inputs, **kwargs)


def count_parameters(name: str, channels: int, num_classes: int, store_inputs=None) -> int:
    model = _build(name, channels, num_classes, store_inputs)
    return sum(p.numel() for p in model.parameters())


def describe_models(
    channels: int, num_classes: int, store_inputs=None, task: str | None = None
) -> list[str]:
    """One line per model for latents of ``channels`` (M) and ``num_classes`` classes, taking
    the inputs of a store with ``store_inputs`` (None: y_hat and scales_hat); with ``task``
    (a store's), only the models that fit it."""
    rows = [("model", "inputs", "parameters", "")]
    for name in sorted(CLASSIFIERS):
        entry = CLASSIFIERS[name]
        if task is not None and entry.task != task:
            continue
        what = entry.summary if entry.latent else f"{entry.summary} Not for latent training."
        model = _build(name, channels, num_classes, store_inputs)
        params = sum(p.numel() for p in model.parameters())
        rows.append((name, "+".join(model.inputs), f"{params / 1e6:.2f}M", what))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    head = f"# M={channels} channels, {num_classes} classes" + (f", {task}" if task else "")
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        for r in rows
    ]
    return [head] + [line.rstrip() for line in lines]

"""Codec training files: the resumable state beside the output and the final checkpoint.

::

    every save_every steps: <out>.state.pt (model, optimizers, schedule, RNG) ──► resumable
    at the end: update(force=True) ──► save_codec_checkpoint(out) (arch, quality, λ, steps, data)
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path

import torch

from latentcache.atomic import atomic_write
from latentcache.codec.train_config import TrainConfig
from latentcache.errors import ConfigError

__all__ = ["load_state", "save_final", "save_state", "state_path_for"]

logger = logging.getLogger(__name__)


def state_path_for(out: str | os.PathLike) -> Path:
    """The resumable training state beside the final checkpoint: ``<out>.state.pt``."""
    out = Path(out)
    return out.with_name(out.name + ".state.pt")


def save_state(path: Path, step: int, model, optimizers, scheduler, generator, config) -> None:
    payload = {
        "step": step,
        "config": config.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizers[0].state_dict(),
        "aux_optimizer": optimizers[1].state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
    }
    with atomic_write(path) as f:
        torch.save(payload, f)


def load_state(path: Path, model, optimizers, scheduler, generator, config) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = TrainConfig.from_dict(state["config"])
    for key in ("arch", "quality", "metric", "N", "M", "crop", "batch_size"):
        if getattr(saved, key) != getattr(config, key):
            raise ConfigError(
                f"cannot resume {path}: it was trained with {key}={getattr(saved, key)!r}, "
                f"this run asks for {getattr(config, key)!r} (use another --out or delete it)"
            )
    model.load_state_dict(state["model"])
    optimizers[0].load_state_dict(state["optimizer"])
    optimizers[1].load_state_dict(state["aux_optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    return int(state["step"])


# Entropy-model tensors (CDFs, scale table, quantiles) stay float32 in a half-precision file.
_KEEP_FLOAT32 = ("entropy_bottleneck.", "gaussian_conditional.")


def save_final(model, config, step, records, history, data_source) -> Path:
    from latentcache.codec.load import save_codec_checkpoint

    model = model.to("cpu").eval()
    path = save_codec_checkpoint(
        config.out,
        model,
        config.spec(),
        **{"lambda": config.lambda_},
        steps=step,
        widths=list(config.widths),
        training={
            "config": config.to_dict(),
            "data": data_source,
            "images": [asdict(r) for r in records],
            "history": history,
        },
    )
    if config.half:
        _halve_checkpoint(path)
    logger.info("saved %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def _halve_checkpoint(path: Path) -> None:
    """Store the transforms' float weights as float16 (the loader casts them back to float32)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["state_dict"] = {
        k: v.half() if v.is_floating_point() and not k.startswith(_KEEP_FLOAT32) else v
        for k, v in payload["state_dict"].items()
    }
    payload["weights_dtype"] = "float16"
    with atomic_write(path) as f:
        torch.save(payload, f)

"""Checkpoints: model, optimizer, scheduler, epoch, config, codec identity, class names,
normalization stats (with the store's sigma-hat floor) and ``initialised_from`` (ImageNet
file and sha256, another run, or random), in one ``torch.save`` dict that loads with
``weights_only=True``.

A checkpoint remembers the codec that made its training latents; :func:`check_codec`
refuses a store made by another codec (architecture, quality, metric, weights).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from latentcache.atomic import atomic_write
from latentcache.errors import CodecMismatchError, RunNotFoundError, StoreCorruptError

__all__ = [
    "CODEC_IDENTITY_KEYS",
    "codec_identity",
    "check_codec",
    "save_checkpoint",
    "load_checkpoint",
    "check_run_folder",
    "unwrap_model",
]

CODEC_IDENTITY_KEYS = ("arch", "quality", "metric", "weights_sha256")


def codec_identity(codec: Mapping) -> dict:
    """The fields of a store's codec record that decide what its latents mean."""
    return {k: codec[k] for k in CODEC_IDENTITY_KEYS if k in codec}


def _describe(identity: Mapping) -> str:
    sha = str(identity.get("weights_sha256", "?"))[:12]
    return (
        f"{identity.get('arch', '?')} quality={identity.get('quality', '?')} "
        f"metric={identity.get('metric', '?')} weights_sha256={sha}"
    )


def check_codec(trained_on: Mapping, store_codec: Mapping, store_path: str | os.PathLike) -> None:
    """Raise :class:`CodecMismatchError` naming both codecs if they differ on any shared key."""
    a, b = codec_identity(trained_on), codec_identity(store_codec)
    differ = [k for k in CODEC_IDENTITY_KEYS if k in a and k in b and a[k] != b[k]]
    if differ:
        raise CodecMismatchError(
            f"checkpoint was trained on latents of {_describe(a)}, but store {store_path} was "
            f"made by {_describe(b)} (differs in {differ})"
        )


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel (or the model itself)."""
    return getattr(model, "module", model)


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (temporary name, fsync, rename)."""
    path = Path(path)
    with atomic_write(path) as f:
        torch.save(state, f)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True`` (no pickle code runs)."""
    path = Path(path)
    if not path.is_file():
        raise RunNotFoundError(f"No checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise StoreCorruptError(f"Cannot load checkpoint {path}: {e}") from e
    missing = [k for k in ("model", "epoch", "config", "codec", "classes") if k not in state]
    if missing:
        raise StoreCorruptError(f"Checkpoint {path} lacks {missing}")
    return state


RUN_MARKERS = ("last.pt", "config.json")


def check_run_folder(path: str | os.PathLike) -> None:
    """Refuse ``--resume`` into something that exists but is not a run (an empty or new folder
    starts one)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunNotFoundError(f"{path} is a file, not a training run folder")
    if path.is_dir() and any(path.iterdir()) and not any((path / m).is_file() for m in RUN_MARKERS):
        raise RunNotFoundError(
            f"{path} is not a training run (no {' or '.join(RUN_MARKERS)} in it): --resume "
            f"continues a folder made by `latentcache train --out`"
        )

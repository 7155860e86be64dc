"""Where a run's weights start, and the record of it (``initialised_from``).

::

    TrainConfig.pretrained  auto | require | off ─► create_classifier(pretrained=...)
        ImageNet trunk from torch hub's cache ─► {"kind": "imagenet", "file", "sha256"}
        none cached: auto ─► WARNING + {"kind": "random", "reason"}; require ─► refuse
    TrainConfig.init  RUN_DIR | FILE ─► that run's weights, a new classification head
        ─► {"kind": "run", "file", "sha256", "model", "epoch"}

The record goes into the run's ``config.json`` and every checkpoint, so a table built from
runs says which started from ImageNet, from another run, or from random weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from latentcache.errors import ConfigError
from latentcache.store.manifest import file_sha256
from latentcache.train.checkpoint import codec_identity, load_checkpoint
from latentcache.train.config import TrainConfig
from latentcache.train.models import CLASSIFIERS, LATENT_INPUTS, create_classifier

__all__ = ["HEAD_PREFIX", "build_classifier", "init_checkpoint_path", "load_init"]

logger = logging.getLogger(__name__)

HEAD_PREFIX = "fc."  # every registered classifier ends in ``fc``: the part --init refits
_PRETRAINED_KWARG = {"auto": "auto", "require": True, "off": False}


def _model_kwargs(config: TrainConfig) -> dict:
    entry = CLASSIFIERS.get(config.model)
    if entry is None:
        raise ConfigError(f'Unknown classifier "{config.model}". Available: {sorted(CLASSIFIERS)}')
    if not entry.latent:
        latent = sorted(n for n, e in CLASSIFIERS.items() if e.latent)
        raise ConfigError(
            f'"{config.model}" is the pixel baseline (it takes {list(entry.inputs)}): the recipes '
            f"train it on decoded or original images. A latent store trains one of {latent}"
        )
    kwargs = dict(config.model_kwargs)
    if entry.imagenet:
        kwargs.setdefault("pretrained", _PRETRAINED_KWARG[config.pretrained])
    elif config.pretrained == "require":
        have = sorted(n for n, e in CLASSIFIERS.items() if e.imagenet and e.latent)
        raise ConfigError(
            f"--pretrained require: {config.model} has no ImageNet weights (models with an "
            f"ImageNet trunk: {have}); use --pretrained auto or --init RUN_DIR"
        )
    return kwargs


def build_classifier(
    config: TrainConfig, num_channels: int, num_classes: int, store_inputs=None
) -> nn.Module:
    """The run's classifier with ``initialised_from`` set, taking the inputs the store has
    (``store_inputs``, its manifest's); refuses image-only models."""
    kwargs = _model_kwargs(config)
    try:
        model = create_classifier(config.model, num_channels, num_classes, store_inputs, **kwargs)
    except TypeError as e:  # an unknown --model-opt
        raise ConfigError(f"{config.model} {kwargs}: {e}") from None
    bad = [i for i in model.inputs if i not in LATENT_INPUTS]
    if bad:
        raise ConfigError(
            f'Model "{config.model}" takes {list(model.inputs)}; a latent store provides {list(LATENT_INPUTS)}'
        )
    return model


def init_checkpoint_path(source: str) -> Path:
    """A run folder's ``best.pt`` (else ``last.pt``), or a checkpoint file itself."""
    path = Path(source)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise ConfigError(f"--init {source}: no best.pt or last.pt in that folder (not a run?)")
    if not path.is_file():
        raise ConfigError(f"--init {source}: no such run folder or checkpoint file")
    return path


def load_init(model: nn.Module, source: str, store_codec: dict) -> dict:
    """Copy another run's weights into ``model``, all but the head (``fc``); the record."""
    path = init_checkpoint_path(source)
    state = load_checkpoint(path)
    theirs = state["model"]
    ours = model.state_dict()
    body = {k: v for k, v in theirs.items() if not k.startswith(HEAD_PREFIX)}
    mismatch = sorted(k for k, v in body.items() if k not in ours or ours[k].shape != v.shape)
    missing = sorted(k for k in ours if not k.startswith(HEAD_PREFIX) and k not in body)
    if mismatch or missing:
        raise ConfigError(
            f"--init {path}: a {state['config'].get('model')} checkpoint does not fit this "
            f"model ({len(mismatch)} tensors differ, e.g. {(mismatch or missing)[:3]})"
        )
    model.load_state_dict({**ours, **body})
    if codec_identity(state["codec"]) != codec_identity(store_codec):
        logger.warning(
            "--init %s was trained on latents of another codec (%s); this store's is %s",
            path,
            codec_identity(state["codec"]),
            codec_identity(store_codec),
        )
    logger.info("initialised from %s (epoch %s), new classification head", path, state["epoch"])
    return {
        "kind": "run",
        "file": str(path),
        "sha256": file_sha256(path),
        "model": state["config"].get("model"),
        "epoch": int(state["epoch"]),
        "classes": len(state["classes"]),
    }

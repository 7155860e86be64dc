"""A fine-tuning run's optimizers and its resumable state (``state.pt`` in the run folder)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from latentcache.errors import ConfigError
from latentcache.finetune.config import FinetuneConfig
from latentcache.finetune.objective import codec_parameters, freeze
from latentcache.finetune.parts import Parts

__all__ = ["STATE_NAME", "build_optimizers", "restore_state", "save_state"]

logger = logging.getLogger(__name__)

STATE_NAME = "state.pt"
# settings a resumed run may change: they do not alter what the run computes
_RESUME_FREE = ("epochs", "resume", "progress", "command", "workers", "device", "amp")


def build_optimizers(parts: Parts) -> dict[str, torch.optim.Optimizer]:
    cfg, opts = parts.config, {}
    trainable = []
    if cfg.trains_codec:
        net, aux = codec_parameters(parts.model, cfg.trains_g_s)
        opts["codec"] = torch.optim.Adam(net, lr=cfg.lr)
        opts["aux"] = torch.optim.Adam(aux, lr=cfg.aux_lr)
        trainable = net + aux
    freeze(parts.model, trainable)
    if parts.classifier is not None:
        freeze(parts.classifier, None if cfg.trains_classifier else [])
    if cfg.trains_classifier:
        lr, params = cfg.classifier_lr or cfg.lr, parts.classifier.parameters()
        opts["classifier"] = (
            torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)
            if cfg.classifier_optimizer == "sgd"
            else torch.optim.Adam(params, lr=lr)
        )
    return opts


def save_state(out: Path, epoch: int, parts: Parts, opts, scaler, train_bpp) -> None:
    from latentcache.train.checkpoint import save_checkpoint

    state = {
        "epoch": epoch,
        "config": parts.config.to_dict(),
        "codec": parts.model.state_dict(),
        "classifier": parts.classifier.state_dict() if parts.classifier is not None else {},
        "optimizers": {k: o.state_dict() for k, o in opts.items()},
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "train_bpp": train_bpp,
    }
    save_checkpoint(out / STATE_NAME, state)


def restore_state(out: Path, parts: Parts, opts, scaler) -> tuple[int, float | None]:
    path = out / STATE_NAME
    if not path.is_file():
        if parts.config.resume:
            logger.info("--resume: no %s in %s yet, starting a new run", STATE_NAME, out)
            return 0, None
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError(
                f"{out} is not empty; pass --resume to continue a run, or another --out"
            )
        return 0, None
    if not parts.config.resume:
        raise ConfigError(
            f"{out} already holds a run ({STATE_NAME}); pass --resume or another --out"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = FinetuneConfig.from_dict(state["config"]).to_dict()
    now = parts.config.to_dict()
    differ = sorted(k for k in now if k not in _RESUME_FREE and now[k] != saved[k])
    if differ:
        raise ConfigError(
            f"cannot resume {path}: it was run with "
            + ", ".join(f"{k}={saved[k]!r} (now {now[k]!r})" for k in differ)
        )
    parts.model.load_state_dict(state["codec"])
    if parts.classifier is not None:
        parts.classifier.load_state_dict(state["classifier"])
    for k, o in opts.items():
        o.load_state_dict(state["optimizers"][k])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    logger.info("resuming %s after epoch %d", out, state["epoch"])
    return int(state["epoch"]), state.get("train_bpp")

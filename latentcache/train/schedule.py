"""Optimizers and learning-rate schedules, stepped once per epoch.

The schedule is a closed form of the epoch (``lr = base_lr * factor(epoch)``), so a run
resumed with more ``--epochs`` follows the longer schedule from where it stopped, and a
run resumed with the same settings is identical to one never interrupted.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from latentcache.train.config import TrainConfig
from latentcache.train.speed import use_fused

__all__ = ["EpochSchedule", "build_optimizer", "build_scheduler", "param_groups"]


POLY_POWER = 0.9  # DeepLab's "poly" learning-rate policy


class EpochSchedule:
    """cosine: ``0.5 (1 + cos(pi e / epochs))``; step: ``gamma ** (e // step_size)``;
    poly (DeepLab): ``(1 - e / epochs) ** 0.9``; constant: 1."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        kind: str,
        epochs: int,
        step_size: int = 10,
        gamma: float = 0.1,
    ) -> None:
        self.optimizer, self.kind, self.epochs = optimizer, kind, epochs
        self.step_size, self.gamma = step_size, gamma
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.epoch = 0
        self._apply()

    def factor(self, epoch: int) -> float:
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(epoch, self.epochs) / self.epochs))
        if self.kind == "step":
            return self.gamma ** (epoch // self.step_size)
        if self.kind == "poly":
            return max(1.0 - min(epoch, self.epochs) / self.epochs, 0.0) ** POLY_POWER
        return 1.0

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * self.factor(self.epoch)

    def step(self) -> None:
        self.epoch += 1
        self._apply()

    def state_dict(self) -> dict:
        return {
            "kind": self.kind,
            "epoch": self.epoch,
            "epochs": self.epochs,
            "base_lrs": self.base_lrs,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the position; the length and kind stay those of the current config."""
        self.epoch, self.base_lrs = int(state["epoch"]), list(state["base_lrs"])
        self._apply()


def param_groups(model: nn.Module, lr: float, head_lr_mult: float = 1.0) -> list[dict]:
    """The trainable parameters as optimizer groups: one at ``lr``, or with ``head_lr_mult``
    != 1 the model's head (the modules named by ``model.head_modules``, e.g. DeepLab's head,
    as DeepLab trains its new classifier layers at 10x) at ``lr * head_lr_mult`` and the rest
    at ``lr``. ConfigError for a model that names no head."""
    from latentcache.errors import ConfigError

    model = getattr(model, "module", model)  # DDP
    params = [p for p in model.parameters() if p.requires_grad]
    if head_lr_mult == 1.0:
        return [{"params": params, "lr": lr}]
    names = tuple(getattr(model, "head_modules", ()))
    if not names:
        raise ConfigError(
            f"head_lr_mult={head_lr_mult}: {type(model).__name__} names no head "
            "(head_modules); use head_lr_mult 1"
        )
    head = {id(p) for n in names for p in getattr(model, n).parameters() if p.requires_grad}
    return [
        {"params": [p for p in params if id(p) not in head], "lr": lr},
        {"params": [p for p in params if id(p) in head], "lr": lr * head_lr_mult},
    ]


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW over the trainable parameters (:func:`param_groups`: the head at
    ``head_lr_mult`` x lr); fused on CUDA when the config asks for it (``fused_optimizer``;
    configs without that option: unfused)."""
    groups = param_groups(model, config.lr, getattr(config, "head_lr_mult", 1.0))
    params = [p for g in groups for p in g["params"]]
    fused = use_fused(params, getattr(config, "fused_optimizer", False)) or None
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov and config.momentum > 0,
            fused=fused,
        )
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> EpochSchedule:
    return EpochSchedule(optimizer, config.schedule, config.epochs, config.step_size, config.gamma)

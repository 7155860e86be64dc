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

__all__ = ["EpochSchedule", "build_optimizer", "build_scheduler"]


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


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW over the trainable parameters; fused on CUDA when the config asks for it
    (``fused_optimizer``; configs without that option, e.g. the image trainer's: unfused)."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = use_fused(params, getattr(config, "fused_optimizer", False)) or None
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov and config.momentum > 0,
            fused=fused,
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> EpochSchedule:
    return EpochSchedule(optimizer, config.schedule, config.epochs, config.step_size, config.gamma)

"""Rate–distortion training of a CompressAI codec (from scratch, the zoo or a checkpoint).

::

    images (folder or a dataset's train split) ──► RGB uint8 in memory (+ sha256 per file)
      │ per step: B random crops, random h/v flips                      x (B, 3, crop, crop)
      ▼
    model(x) ──► x_hat, likelihoods ──► RateDistortionLoss(λ) = λ·255²·MSE + bpp   (CompressAI's)
      │ Adam on every parameter but the entropy bottleneck's quantiles, grad-norm clipped
      │ aux_loss() with its own Adam on the quantiles            (CompressAI examples/train.py)
      │ cosine learning-rate decay to lr · lr_final_ratio
      ▼
    every save_every steps: <out>.state.pt (model, optimizers, schedule, RNG) ──► resumable
    at the end: update(force=True) ──► save_codec_checkpoint(out) (arch, quality, λ, steps, data)

The run's config lives in ``train_config``, its images and crops in ``train_data``, its
resumable state and final checkpoint in ``train_state``; this module is the loop.
λ per quality is CompressAI's own table (``compressai.models.vbr``, the values its docs list).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentcache.codec.spec import LAMBDAS, lambda_for
from latentcache.codec.train_config import TrainConfig, TrainingImage, TrainResult
from latentcache.codec.train_data import list_image_files, load_training_images, sample_batch
from latentcache.codec.train_state import load_state, save_final, save_state, state_path_for

__all__ = [
    "LAMBDAS",
    "TrainConfig",
    "TrainResult",
    "TrainingImage",
    "lambda_for",
    "list_image_files",
    "load_training_images",
    "build_model",
    "configure_optimizers",
    "sample_batch",
    "run_codec_train",
    "state_path_for",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- model and optimizers


def build_model(config: TrainConfig) -> torch.nn.Module:
    """A fresh model, the zoo's, or a checkpoint's, in train mode with gradients on."""
    from latentcache.codec.load import load_codec

    if config.init == "scratch":
        from compressai.zoo.image import model_architectures

        cls = model_architectures[config.arch]
        n, m = config.widths  # cheng2020 is built from N alone (N = M)
        model = cls(n) if config.arch.startswith("cheng2020") else cls(n, m)
    else:
        spec = replace(config.spec(), source=config.init, checkpoint=config.init_checkpoint)
        if config.init == "checkpoint":  # the starting point keeps its own labels
            spec = replace(spec, quality=None, metric=None)
        model = load_codec(spec).model
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train()


def configure_optimizers(model: torch.nn.Module, config: TrainConfig):
    """Adam for the network, a separate Adam for the entropy bottleneck's ``quantiles``."""
    params = dict(model.named_parameters())
    aux_names = sorted(n for n in params if n.endswith(".quantiles"))
    net_names = sorted(n for n in params if not n.endswith(".quantiles"))
    optimizer = torch.optim.Adam((params[n] for n in net_names), lr=config.lr)
    aux_optimizer = torch.optim.Adam((params[n] for n in aux_names), lr=config.aux_lr)
    return optimizer, aux_optimizer


def _cosine(config: TrainConfig):
    r = config.lr_final_ratio

    def factor(step: int) -> float:
        t = min(step, config.steps) / config.steps
        return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


# ---------------------------------------------------------------- the loop


def _train_step(model, criterion, optimizers, scheduler, x, clip: float) -> dict[str, float]:
    optimizer, aux_optimizer = optimizers
    optimizer.zero_grad(set_to_none=True)
    aux_optimizer.zero_grad(set_to_none=True)
    out = criterion(model(x), x)
    out["loss"].backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    aux_loss = model.aux_loss()
    aux_loss.backward()
    aux_optimizer.step()
    scheduler.step()
    mse = float(out["mse_loss"].detach()) if "mse_loss" in out else float("nan")
    return {
        "loss": float(out["loss"].detach()),
        "bpp": float(out["bpp_loss"].detach()),
        "psnr": -10 * math.log10(mse) if mse > 0 else float("inf"),
        "aux": float(aux_loss.detach()),
    }


def _progress(total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        desc="codec train",
        disable=not sys.stderr.isatty(),
        dynamic_ncols=True,
    )


def _mean(records: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in records])) for k in records[0]}


def run_codec_train(
    config: TrainConfig,
    files: list[Path],
    root: Path,
    resume: bool = True,
    data_source: dict[str, Any] | None = None,
) -> TrainResult:
    """Train, save resumable state every ``save_every`` steps, and write the final codec."""
    from compressai.losses import RateDistortionLoss

    torch.manual_seed(config.seed)
    model = build_model(config).to(config.device)  # fails fast (zoo offline, bad checkpoint)
    images, records = load_training_images(files, root, config.crop)
    optimizers = configure_optimizers(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizers[0], _cosine(config))
    generator = torch.Generator().manual_seed(config.seed)
    state = state_path_for(config.out)
    step = 0
    if resume and state.is_file():
        step = load_state(state, model, optimizers, scheduler, generator, config)
        logger.info("resumed %s at step %d", state, step)
    criterion = RateDistortionLoss(lmbda=config.lambda_, metric=config.metric)
    logger.info(
        "training %s q%d %s (N, M)=%s λ=%g on %d images, %d steps of %dx%d crops x %d",
        config.arch,
        config.quality,
        config.init,
        config.widths,
        config.lambda_,
        len(images),
        config.steps,
        config.crop,
        config.crop,
        config.batch_size,
    )
    start, history, window = time.monotonic(), [], []
    with _progress(config.steps, step) as bar:
        while step < config.steps:
            x = sample_batch(images, config.batch_size, config.crop, generator).to(config.device)
            window.append(
                _train_step(model, criterion, optimizers, scheduler, x, config.clip_max_norm)
            )
            step += 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{window[-1]['loss']:.3f}",
                bpp=f"{window[-1]['bpp']:.3f}",
                psnr=f"{window[-1]['psnr']:.2f}",
            )
            if step % config.log_every == 0 or step == config.steps:
                history.append(_log_window(step, window, start, scheduler))
                window = []
            if step % config.save_every == 0:
                save_state(state, step, model, optimizers, scheduler, generator, config)
            if _out_of_time(config, start):
                logger.warning("max_minutes=%s reached at step %d", config.max_minutes, step)
                break
    save_state(state, step, model, optimizers, scheduler, generator, config)
    out = save_final(model, config, step, records, history, data_source or {})
    return TrainResult(out, step, time.monotonic() - start, history)


def _log_window(step: int, window: list[dict], start: float, scheduler) -> dict:
    record = {"step": step, **_mean(window), "lr": scheduler.get_last_lr()[0]}
    record["seconds"] = round(time.monotonic() - start, 1)
    logger.info(
        "step %d loss %.4f bpp %.4f psnr %.2f aux %.1f lr %.2e (%.0fs)",
        step,
        record["loss"],
        record["bpp"],
        record["psnr"],
        record["aux"],
        record["lr"],
        record["seconds"],
    )
    return record


def _out_of_time(config: TrainConfig, start: float) -> bool:
    return config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes

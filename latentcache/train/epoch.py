"""One epoch of training, and a deterministic evaluation: plain PyTorch, no run state.

::

    batches ─► prepare (non-blocking copy ─► LatentTransform.apply: latents and the task's
               targets through one crop and flip) ─► forward (AMP on CUDA)
      ─► task.loss ─► step              (train_one_epoch: loss, accuracy, samples/s)
    batches ─► prepare (deterministic) ─► forward ─► task's meter, summed over ranks

The task (``latentcache.tasks``) names the targets, the loss, the accuracy and the meter;
nothing here depends on which task it is.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import torch
from torch import nn

from latentcache.tasks import Task, get_task
from latentcache.train.augment import LatentTransform
from latentcache.train.checkpoint import unwrap_model

__all__ = ["Prepare", "amp_context", "make_prepare", "train_one_epoch", "evaluate", "SYNC_EVERY"]

SYNC_EVERY = 20  # steps between device syncs for the loss check and progress bar

Prepare = Callable[[dict, bool, "torch.Generator | None"], tuple[list[torch.Tensor], torch.Tensor]]


def amp_context(device: torch.device, enabled: bool):
    """bfloat16 autocast on CUDA where supported, float16 otherwise; nothing on the CPU."""
    if not enabled or device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def make_prepare(
    transform: LatentTransform, device: torch.device, channels_last: bool, task: Task | None = None
) -> Prepare:
    """Batch dict -> (model inputs on ``device``, targets): non-blocking copy, then the
    transform, which maps ``task``'s targets (default: class labels) with the latents."""
    task = task or get_task("classification")

    def prepare(batch: dict, train: bool, generator: torch.Generator | None):
        moved = {k: batch[k].to(device, non_blocking=True) for k in transform.fields}
        moved |= task.targets_to(batch, device)
        xs, targets = transform.apply(moved, train, generator, task)
        if channels_last and device.type == "cuda":
            xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
        return xs, targets

    return prepare


def _progress(total: int | None, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="batch",
        desc=desc,
        disable=not (enabled and sys.stderr.isatty()),
        leave=False,
    )


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[dict],
    prepare: Prepare,
    optimizer: torch.optim.Optimizer,
    *,
    generator: torch.Generator | None = None,
    label_smoothing: float = 0.0,
    scaler: torch.amp.GradScaler | None = None,
    amp=nullcontext,
    total: int | None = None,
    progress: bool = False,
    task: Task | None = None,
) -> dict:
    """One pass over ``batches``; returns this rank's loss, accuracy (``train_top1``: of
    images, or of pixels for segmentation), samples and samples/s."""
    model.train()
    task = task or get_task("classification")
    loss_sum, correct, counted, seen = 0.0, 0, 0, 0  # sums stay on the device
    start = time.perf_counter()
    with _progress(total, progress, "train") as bar:
        for step, batch in enumerate(batches, 1):
            xs, targets = prepare(batch, True, generator)
            with amp():
                logits = task.forward(model, xs, targets, True)
                loss = task.loss(logits, targets, label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            _backward_step(loss, optimizer, scaler)
            n = len(targets)
            loss_sum, seen = loss_sum + loss.detach() * n, seen + n
            hit, count = task.hits(logits, targets)
            correct, counted = correct + hit, counted + count
            if step % SYNC_EVERY == 0:  # one device sync every few steps, bar or not
                _check_finite(loss_sum, step)
                rate = seen / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", samples_s=f"{rate:.0f}")
            bar.update()
    _check_finite(loss_sum, "the last")
    elapsed = time.perf_counter() - start
    return {
        "train_loss": float(loss_sum) / max(seen, 1),
        "train_top1": int(correct) / max(int(counted), 1),
        "train_samples": seen,
        "train_samples_per_s": seen / max(elapsed, 1e-9),
        "train_time_s": elapsed,
    }


def _check_finite(loss_sum, step) -> None:
    if not math.isfinite(float(loss_sum)):
        raise FloatingPointError(
            f"training loss is not finite by step {step}; lower --lr or check the inputs"
        )


def _backward_step(loss: torch.Tensor, optimizer, scaler) -> None:
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[dict],
    prepare: Prepare,
    num_classes: int,
    amp=nullcontext,
    task: Task | None = None,
):
    """Deterministic evaluation (center crop; whole latents for dense tasks); the task's
    meter (classification: :class:`ClassificationMeter`), summed over DDP ranks."""
    task = task or get_task("classification")
    model = unwrap_model(model)  # no DDP collectives: ranks may hold different batch counts
    model.eval()
    meter = task.make_meter(num_classes)
    for batch in batches:
        xs, targets = prepare(batch, False, None)
        with amp():
            outputs = task.forward(model, xs, targets, False)
        meter.update(outputs, targets, task.eval_loss(outputs, targets))
    meter.all_reduce()
    return meter

"""The training loop: plain PyTorch, readable in one sitting.

::

    TrainConfig ─► open_store ─► splits, classes, stats (train split), codec identity
      └► create_classifier(model, M, classes) ─► (resume: load last.pt) ─► DDP if torchrun
      └► for each epoch:
           LatentStream (Zarr | WebDataset) ─► device ─► LatentTransform (crop/flip, seeded)
             ─► forward (AMP on CUDA) ─► cross entropy (label smoothing) ─► step
           evaluate on the eval split (center crop; counts summed over ranks)
           rank 0: metrics.jsonl line, last.pt (+ best.pt), progress bar
      └► rank 0: curves.png, eval_<split>.json, confusion_<split>.png

Every random draw derives from ``(seed, epoch)``, so ``--resume`` continues the same run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from latentcache.errors import ConfigError
from latentcache.train.augment import LatentStats, LatentTransform
from latentcache.train.checkpoint import (
    check_codec,
    codec_identity,
    load_checkpoint,
    save_checkpoint,
    unwrap_model,
)
from latentcache.train.config import TrainConfig
from latentcache.train.data import StreamSpec, batches_per_rank, build_loader, split_count
from latentcache.train.distributed import (
    DistInfo,
    resolve_device,
    setup_distributed,
    teardown_distributed,
)
from latentcache.train.metrics import ClassificationMeter
from latentcache.train.models import LATENT_INPUTS, create_classifier
from latentcache.train.schedule import build_optimizer, build_scheduler

__all__ = [
    "run_training",
    "choose_splits",
    "train_one_epoch",
    "evaluate",
    "make_prepare",
    "amp_context",
]

logger = logging.getLogger(__name__)

SYNC_EVERY = 20  # steps between device syncs for the loss check and progress bar

Prepare = Callable[[dict, bool, "torch.Generator | None"], tuple[list[torch.Tensor], torch.Tensor]]


def choose_splits(
    splits: list[str], train: str | None, eval_: str | None
) -> tuple[str, str | None]:
    """Explicit splits must exist; defaults: train, then validate/val/test (else none)."""
    for name in (train, eval_):
        if name is not None and name not in splits:
            raise ConfigError(f'Split "{name}" is not in the store; its splits are {splits}')
    train = train or ("train" if "train" in splits else splits[0])
    if eval_ is None:
        eval_ = next((s for s in ("validate", "val", "test") if s in splits and s != train), None)
        logger.info("training on split %r, evaluating on %r", train, eval_)
    return train, eval_


def amp_context(device: torch.device, enabled: bool):
    """bfloat16 autocast on CUDA where supported, float16 otherwise; nothing on the CPU."""
    if not enabled or device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def make_prepare(transform: LatentTransform, device: torch.device, channels_last: bool) -> Prepare:
    """Batch dict -> (model inputs on ``device``, labels): non-blocking copy, then transform."""

    def prepare(batch: dict, train: bool, generator: torch.Generator | None):
        moved = {k: batch[k].to(device, non_blocking=True) for k in transform.inputs}
        xs = transform(moved, train, generator)
        if channels_last and device.type == "cuda":
            xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
        return xs, batch["label"].to(device, non_blocking=True)

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
) -> dict:
    """One pass over ``batches``; returns this rank's loss, top-1, samples and samples/s."""
    model.train()
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()  # sums stay on the device
    with _progress(total, progress, "train") as bar:
        for step, batch in enumerate(batches, 1):
            xs, labels = prepare(batch, True, generator)
            with amp():
                logits = model(*xs)
                loss = criterion(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            _backward_step(loss, optimizer, scaler)
            n = len(labels)
            loss_sum, seen = loss_sum + loss.detach() * n, seen + n
            correct = correct + (logits.argmax(1) == labels).sum()
            if step % SYNC_EVERY == 0 or not bar.disable:  # one device sync every few steps
                _check_finite(loss_sum, step)
                rate = seen / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", samples_s=f"{rate:.0f}")
            bar.update()
    _check_finite(loss_sum, "the last")
    elapsed = time.perf_counter() - start
    return {
        "train_loss": float(loss_sum) / max(seen, 1),
        "train_top1": int(correct) / max(seen, 1),
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
    model: nn.Module, batches: Iterable[dict], prepare: Prepare, num_classes: int, amp=nullcontext
) -> ClassificationMeter:
    """Deterministic evaluation (center crop); the meter is summed over DDP ranks."""
    model = unwrap_model(model)  # no DDP collectives: ranks may hold different batch counts
    model.eval()
    meter = ClassificationMeter(num_classes)
    criterion = nn.CrossEntropyLoss()
    for batch in batches:
        xs, labels = prepare(batch, False, None)
        with amp():
            logits = model(*xs).float()
        meter.update(logits, labels, float(criterion(logits, labels)))
    meter.all_reduce()
    return meter


# ---------------------------------------------------------------- the run


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class _Run:
    """State of one training run (kept small: the steps are the functions above)."""

    def __init__(self, config: TrainConfig, device: torch.device, dist: DistInfo) -> None:
        from latentcache.store import open_store

        self.config, self.device, self.dist = config, device, dist
        self.out = Path(config.out)
        self.store = open_store(config.store)
        self.train_split, self.eval_split = choose_splits(
            list(self.store.splits), config.train_split, config.eval_split
        )
        self.classes = list(self.store.classes)
        self.codec = codec_identity(self.store.codec)
        self.stats = LatentStats.from_dict(self.store.split_info(self.train_split)["stats"])
        self.resume_state = self._find_resume()
        self.model = self._build_model()
        self.transform = LatentTransform(self.model.inputs, self.stats, config.augment)
        self.prepare = make_prepare(self.transform, device, config.channels_last)
        self.amp_on = config.amp and device.type == "cuda"
        fp16 = self.amp_on and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)

    def _find_resume(self) -> dict | None:
        last = self.out / "last.pt"
        if not last.exists():
            if self.config.resume:
                logger.info("--resume: no checkpoint in %s yet, starting a new run", self.out)
            return None
        if not self.config.resume:
            raise ConfigError(
                f"{self.out} already holds a run (last.pt); pass --resume or another --out"
            )
        state = load_checkpoint(last)
        check_codec(state["codec"], self.codec, self.config.store)
        if state["config"]["model"] != self.config.model:
            raise ConfigError(
                f"--resume: {last} is a {state['config']['model']} run, not {self.config.model}"
            )
        self.stats = LatentStats.from_dict(state["stats"])
        return state

    def _build_model(self) -> nn.Module:
        torch.manual_seed(self.config.seed)
        kwargs = self.config.model_kwargs
        try:
            model = create_classifier(
                self.config.model, self.store.num_channels, len(self.classes), **kwargs
            )
        except KeyError as e:
            raise ConfigError(e.args[0]) from None
        except TypeError as e:  # an unknown --model-opt
            raise ConfigError(f"{self.config.model} {kwargs}: {e}") from None
        bad = [i for i in model.inputs if i not in LATENT_INPUTS]
        if bad:
            raise ConfigError(
                f'Model "{self.config.model}" takes {list(model.inputs)}; a latent store provides {list(LATENT_INPUTS)}'
            )
        if self.resume_state is not None:
            model.load_state_dict(self.resume_state["model"])
        model.to(self.device)
        if self.config.channels_last and self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        model.inputs = unwrap_model(model).inputs
        return model

    def loader(self, split: str, train: bool):
        cfg = self.config
        steps = None
        if train:
            count = split_count(self.store.split_info(split))
            steps = batches_per_rank(count, self.dist.world_size, cfg.batch_size)
            steps = min(steps, cfg.max_batches or steps)
        spec = StreamSpec(
            store=str(cfg.store),
            split=split,
            fmt=cfg.format,
            fields=tuple(self.model.inputs),
            shuffle=train,
            seed=cfg.seed,
            buffer_size=cfg.buffer_size,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            batch_size=cfg.batch_size,
            batches_per_rank=steps,
        )
        loader = build_loader(spec, cfg.workers, cfg.resize, pin_memory=self.device.type == "cuda")
        return loader, steps

    def amp(self):
        return amp_context(self.device, self.amp_on)

    def fit(self) -> dict:
        cfg, main = self.config, self.dist.is_main
        optimizer = build_optimizer(cfg, self.model)
        scheduler = build_scheduler(cfg, optimizer)
        start, best = 0, -1.0
        if self.resume_state is not None:
            start, best = self._restore(optimizer, scheduler)
        if main:
            self._write_run_files(start)
        train_loader, steps = self.loader(self.train_split, train=True)
        eval_loader = self.loader(self.eval_split, train=False)[0] if self.eval_split else None
        record, meter = {}, None
        for epoch in range(start, cfg.epochs):
            train_loader.dataset.set_epoch(epoch)
            record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
            record |= self._train_epoch(train_loader, optimizer, epoch, steps)
            scheduler.step()
            if eval_loader is not None:
                meter = evaluate(self.model, eval_loader, self.prepare, len(self.classes), self.amp)
                summary = meter.summary()
                record |= {
                    "eval_top1": summary["top1"],
                    "eval_top5": summary["top5"],
                    "eval_loss": summary["loss"],
                }
            score = record.get("eval_top1", record["train_top1"])
            is_best, best = score > best, max(score, best)
            if main:
                self._end_epoch(record, optimizer, scheduler, best, is_best)
        if main:
            self._finish(meter)
        return {"run_dir": str(self.out), "epochs": cfg.epochs, "best_top1": best, **record}

    def _train_epoch(self, loader, optimizer, epoch: int, steps: int) -> dict:
        stats = train_one_epoch(
            self.model,
            loader,
            self.prepare,
            optimizer,
            generator=_epoch_generator(self.config.seed, epoch),
            label_smoothing=self.config.label_smoothing,
            scaler=self.scaler,
            amp=self.amp,
            total=steps,
            progress=self.config.progress and self.dist.is_main,
        )
        if self.dist.enabled:  # loss / accuracy over all ranks
            t = torch.tensor(
                [
                    stats["train_loss"] * stats["train_samples"],
                    stats["train_top1"] * stats["train_samples"],
                    stats["train_samples"],
                ],
                dtype=torch.float64,
            )
            torch.distributed.all_reduce(t)
            stats |= {
                "train_loss": float(t[0] / t[2]),
                "train_top1": float(t[1] / t[2]),
                "train_samples": int(t[2]),
            }
            stats["train_samples_per_s"] = stats["train_samples"] / stats["train_time_s"]
        return stats

    def _restore(self, optimizer, scheduler) -> tuple[int, float]:
        state = self.resume_state
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        logger.info("resuming %s after epoch %d", self.out, state["epoch"])
        return int(state["epoch"]), float(state.get("best_top1", -1.0))

    def _write_run_files(self, start: int) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(
            json.dumps(self.config.to_dict(), indent=2, sort_keys=True)
        )
        metrics = self.out / "metrics.jsonl"
        kept = []
        if start and metrics.exists():
            kept = [
                line
                for line in metrics.read_text().splitlines()
                if line and json.loads(line)["epoch"] <= start
            ]
        metrics.write_text("".join(line + "\n" for line in kept))

    def _end_epoch(self, record: dict, optimizer, scheduler, best: float, is_best: bool) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        state = {
            "model": unwrap_model(self.model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": record["epoch"],
            "best_top1": best,
            "config": self.config.to_dict(),
            "codec": self.codec,
            "classes": self.classes,
            "stats": self.stats.to_dict(),
            "inputs": list(self.model.inputs),
            "num_channels": int(self.store.num_channels),
        }
        save_checkpoint(self.out / "last.pt", state)
        if is_best:
            save_checkpoint(self.out / "best.pt", state)
        parts = [f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float)]
        logger.info("epoch %d/%d %s", record["epoch"], self.config.epochs, " ".join(parts))

    def _finish(self, meter: ClassificationMeter | None) -> None:
        from latentcache.report.training import plot_confusion_matrix, plot_training_curves

        plot_training_curves(self.out / "metrics.jsonl", self.out / "curves.png")
        if meter is not None:
            summary = meter.summary(self.classes) | {
                "split": self.eval_split,
                "checkpoint": "last.pt",
            }
            (self.out / f"eval_{self.eval_split}.json").write_text(
                json.dumps(summary, indent=2, sort_keys=True)
            )
            plot_confusion_matrix(
                summary["confusion"], self.classes, self.out / f"confusion_{self.eval_split}.png"
            )


def run_training(config: TrainConfig) -> dict:
    """Train ``config.model`` on ``config.store``; under torchrun, one call per rank."""
    device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    dist = setup_distributed(device)
    owns_group = dist.enabled
    try:
        torch.manual_seed(config.seed)
        return _Run(config, device, dist).fit()
    finally:
        if owns_group:
            teardown_distributed()

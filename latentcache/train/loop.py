"""The training loop: plain PyTorch, readable in one sitting.

::

    TrainConfig ─► open_run_data: splits, classes, stats (train split, store's sigma floor), codec
      └► build_model: classifier (init.py) ─► resume last.pt | --init run | ImageNet | random
         ─► place_model: device, DDP if torchrun
      └► Trainer.fit, for each epoch:
           LatentStream (Zarr | WebDataset) ─► device ─► LatentTransform (crop/flip, seeded
           by (seed, epoch, rank))
             ─► forward (AMP on CUDA) ─► the task's loss (label smoothing) ─► step
           evaluate on the eval split (deterministic; the task's meter, summed over ranks)
           rank 0 (run_files.py): metrics.jsonl line, last.pt (+ best.pt), progress bar
      └► rank 0: curves.png, eval_<split>.json, confusion_<split>.png

Every random draw derives from ``(seed, epoch, rank)``, so ``--resume`` continues the same run.
The store's task (``latentcache.tasks``: classification, segmentation) supplies targets, loss,
meter and the score that picks ``best.pt`` (top-1, mIoU); the loop itself names no task.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from latentcache.errors import ConfigError
from latentcache.tasks import Task
from latentcache.train.augment import LatentStats, LatentTransform, batch_fields
from latentcache.train.cache import cache_loader
from latentcache.train.checkpoint import (
    check_codec,
    codec_identity,
    load_checkpoint,
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
from latentcache.train.epoch import amp_context, evaluate, make_prepare, train_one_epoch
from latentcache.train.feed import DeviceFeeder
from latentcache.train.init import build_classifier, load_init
from latentcache.train.run_files import RunFiles
from latentcache.train.schedule import build_optimizer, build_scheduler
from latentcache.train.speed import compile_model, cudnn_benchmark, use_fused

__all__ = [
    "run_training",
    "default_model",
    "check_model_task",
    "Trainer",
    "augment_generator",
    "open_run_data",
    "build_model",
    "choose_splits",
    "train_one_epoch",
    "evaluate",
    "make_prepare",
    "amp_context",
]

logger = logging.getLogger(__name__)


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


# ---------------------------------------------------------------- the run


def augment_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """The crops and flips of one epoch on one rank: seeded by ``(seed, epoch, rank)``, so
    DDP ranks draw different augmentations and ``--resume`` draws the same ones again."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


@dataclass
class RunData:
    """What a run takes from its store: splits, classes, codec identity, statistics."""

    store: object  # LatentStore
    train_split: str
    eval_split: str | None
    classes: list[str]
    codec: dict
    stats: LatentStats
    task: Task


def open_run_data(config: TrainConfig) -> RunData:
    from latentcache.store import open_store

    store = open_store(config.store)
    check_classes(store, config.store)
    train, eval_ = choose_splits(list(store.splits), config.train_split, config.eval_split)
    stats = store.split_info(train)["stats"] | {"scales_floor": store.scale_floor}
    return RunData(
        store,
        train,
        eval_,
        list(store.classes),
        codec_identity(store.codec),
        LatentStats.from_dict(stats),
        store.task_unit,
    )


def check_classes(store, where: str) -> None:
    """Refuse, before any work, a store with fewer classes than its task trains on."""
    task, classes = store.task_unit, list(store.classes)
    if len(classes) < task.min_classes:
        names = ", ".join(classes[:3]) or "none"
        raise ConfigError(
            f"store {where} has {len(classes)} class{'es' if len(classes) != 1 else ''} "
            f"({names}); {task.name} needs at least {task.min_classes}"
        )


def find_resume(config: TrainConfig, data: RunData) -> dict | None:
    """``last.pt`` of ``config.out`` when resuming (checked against store and model)."""
    out = Path(config.out)
    last = out / "last.pt"
    if not last.exists():
        if config.resume:
            logger.info("--resume: no checkpoint in %s yet, starting a new run", out)
        return None
    if not config.resume:
        raise ConfigError(f"{out} already holds a run (last.pt); pass --resume or another --out")
    state = load_checkpoint(last)
    check_codec(state["codec"], data.codec, config.store)
    if state["config"]["model"] != config.model:
        raise ConfigError(
            f"--resume: {last} is a {state['config']['model']} run, not {config.model}"
        )
    data.stats = LatentStats.from_dict(state["stats"])
    return state


def build_model(config: TrainConfig, data: RunData, resume: dict | None) -> tuple[nn.Module, dict]:
    """The classifier with its starting weights: resumed, ``--init``, ImageNet or random;
    returns it with the record of where the weights came from."""
    check_model_task(config.model, data.task)
    torch.manual_seed(config.seed)
    fresh = config.replace(pretrained="off") if config.init or resume else config  # overwritten
    model = build_classifier(fresh, data.store.num_channels, len(data.classes), data.store.inputs)
    record = dict(model.initialised_from)
    if resume is not None:
        model.load_state_dict(resume["model"])
        record = resume.get("initialised_from", record)
    elif config.init:
        record = load_init(model, config.init, data.store.codec)
    return model, record


def check_model_task(model: str, task: Task) -> None:
    """The model predicts what the store's task needs (ConfigError naming those that do)."""
    from latentcache.train.models import CLASSIFIERS, list_classifiers

    entry = CLASSIFIERS.get(model)
    if entry is not None and entry.task != task.name:
        raise ConfigError(
            f'model "{model}" is a {entry.task} model; this store is {task.name}: '
            f"choose one of {list_classifiers(task.name)}"
        )


def default_model(store: str) -> str:
    """The default model of ``store``'s task (``latentcache train`` without ``--model``)."""
    from latentcache.store import open_store

    return open_store(store).task_unit.default_model


def place_model(model: nn.Module, config: TrainConfig, device, dist: DistInfo) -> nn.Module:
    """On the device (channels_last on CUDA), wrapped in DDP under torchrun."""
    inputs = model.inputs
    model.to(device)
    if config.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    model.inputs = inputs
    return model


def make_loader(
    config: TrainConfig,
    data: RunData,
    split: str,
    fields,
    dist: DistInfo,
    train: bool,
    pin: bool,
    device: torch.device | None = None,
):
    """The split's batches for this rank: the streaming DataLoader, or with ``config.cache``
    the split held in memory (cache.py); train mode: a fixed number of steps per rank."""
    steps = None
    if train:
        count = split_count(data.store.split_info(split))
        steps = batches_per_rank(count, dist.world_size, config.batch_size)
        steps = min(steps, config.max_batches or steps)
    spec = StreamSpec(
        store=str(config.store),
        split=split,
        fmt=config.format,
        fields=tuple(fields),
        shuffle=train,
        seed=config.seed,
        buffer_size=config.buffer_size,
        rank=dist.rank,
        world_size=dist.world_size,
        batch_size=config.batch_size,
        batches_per_rank=steps,
        codec_checkpoint=config.codec_checkpoint,
    )
    if config.cache != "off":
        device = device or torch.device("cpu")
        return cache_loader(spec, config.cache, device, config.workers, steps), steps
    loader = build_loader(spec, config.workers, config.resize, pin_memory=pin, recycle=True)
    return loader, steps


def _reduce_train_stats(stats: dict) -> dict:
    """Loss and accuracy over all DDP ranks (sums weighted by samples)."""
    n = stats["train_samples"]
    t = torch.tensor([stats["train_loss"] * n, stats["train_top1"] * n, n], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    out = stats | {
        "train_loss": float(t[0] / t[2]),
        "train_top1": float(t[1] / t[2]),
        "train_samples": int(t[2]),
    }
    out["train_samples_per_s"] = out["train_samples"] / out["train_time_s"]
    return out


class Trainer:
    """One run: the model, its data, the epoch loop and the run folder (rank 0 writes)."""

    def __init__(self, config: TrainConfig, device: torch.device, dist: DistInfo) -> None:
        self.config, self.device, self.dist = config, device, dist
        self.data = open_run_data(config)
        self.resume = find_resume(config, self.data)
        model, self.initialised_from = build_model(config, self.data, self.resume)
        self.model = place_model(model, config, device, dist)
        self.step_model = compile_model(self.model, config.compile_mode)
        channels_last = config.channels_last and device.type == "cuda"
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        transform = LatentTransform(
            self.model.inputs, self.data.stats, config.augment, fmt, self.data.store.inputs
        )
        self.task = self.data.task
        self.prepare = make_prepare(transform, device, config.channels_last, self.task)
        self.feed = DeviceFeeder(device)  # pinned ring + copy stream on CUDA
        self.amp_on = config.amp and device.type == "cuda"
        fp16 = self.amp_on and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.files = RunFiles(Path(config.out), config.to_dict(), self._record())

    def _record(self) -> dict:
        return {
            "codec": self.data.codec,
            "classes": self.data.classes,
            "stats": self.data.stats.to_dict(),
            "inputs": list(self.model.inputs),
            "num_channels": int(self.data.store.num_channels),
            "initialised_from": self.initialised_from,
        }

    def amp(self):
        return amp_context(self.device, self.amp_on)

    def loader(self, split: str, train: bool):
        cfg, inputs = self.config, batch_fields(self.model.inputs, self.data.store.inputs)
        # pin_memory off: the feeder stages batches in its own pinned buffers
        return make_loader(cfg, self.data, split, inputs, self.dist, train, False, self.device)

    def fit(self) -> dict:
        cfg, main = self.config, self.dist.is_main
        optimizer = build_optimizer(cfg, self.model)
        scheduler = build_scheduler(cfg, optimizer)
        start, best = self._restore(optimizer, scheduler) if self.resume else (0, -1.0)
        if main:
            self.files.start(start)
        train_loader, steps = self.loader(self.data.train_split, train=True)
        eval_split = self.data.eval_split
        eval_loader = self.loader(eval_split, train=False)[0] if eval_split else None
        record, meter = {}, None
        for epoch in range(start, cfg.epochs):
            train_loader.dataset.set_epoch(epoch)
            record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
            record |= self.train_epoch(train_loader, optimizer, epoch, steps)
            scheduler.step()
            if eval_loader is not None:
                meter = self.evaluate(eval_loader)
                summary = meter.summary()
                record |= {f"eval_{k}": summary[k] for k in self.task.record_keys}
            score = record.get(f"eval_{self.task.score_key}", record["train_top1"])
            is_best, best = score > best, max(score, best)
            if main:
                self._end_epoch(record, optimizer, scheduler, best, is_best)
        if main:
            self.files.finish(meter, self.data.classes, eval_split)
        # best_score: of score_key on the eval split (else training top-1); best_top1: its
        # name before tasks other than classification
        task = {"score_key": self.task.score_key, "score_label": self.task.score_label}
        run = {"run_dir": cfg.out, "epochs": cfg.epochs, "best_score": best, "best_top1": best}
        return run | task | record

    def train_epoch(self, loader, optimizer, epoch: int, steps: int | None) -> dict:
        stats = train_one_epoch(
            self.step_model,
            self.feed(loader),
            self.prepare,
            optimizer,
            generator=self.augment_generator(epoch),
            label_smoothing=self.config.label_smoothing,
            scaler=self.scaler,
            amp=self.amp,
            total=steps,
            progress=self.config.progress and self.dist.is_main,
            task=self.task,
        )
        return _reduce_train_stats(stats) if self.dist.enabled else stats

    def augment_generator(self, epoch: int) -> torch.Generator:
        """This rank's crops and flips for ``epoch`` (:func:`augment_generator`)."""
        return augment_generator(self.config.seed, epoch, self.dist.rank)

    def evaluate(self, loader):
        batches = self.feed(loader)
        n = len(self.data.classes)
        return evaluate(self.model, batches, self.prepare, n, self.amp, self.task)

    def _restore(self, optimizer, scheduler) -> tuple[int, float]:
        state = self.resume
        optimizer.load_state_dict(state["optimizer"])
        params = [p for g in optimizer.param_groups for p in g["params"]]
        fused = use_fused(params, self.config.fused_optimizer) or None
        for group in optimizer.param_groups:  # this run's device decides, not the checkpoint's
            group["fused"] = fused
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        logger.info("resuming %s after epoch %d", self.config.out, state["epoch"])
        return int(state["epoch"]), float(state.get("best_top1", -1.0))

    def _end_epoch(self, record: dict, optimizer, scheduler, best: float, is_best: bool) -> None:
        state = {
            "model": unwrap_model(self.model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": record["epoch"],
            "best_top1": best,
        }
        self.files.end_epoch(record, state, is_best)
        parts = [f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float)]
        logger.info("epoch %d/%d %s", record["epoch"], self.config.epochs, " ".join(parts))


def run_training(config: TrainConfig) -> dict:
    """Train ``config.model`` on ``config.store``; under torchrun, one call per rank."""
    device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    dist = setup_distributed(device)
    owns_group = dist.enabled
    try:
        torch.manual_seed(config.seed)
        with cudnn_benchmark(device, config.cudnn_benchmark):
            return Trainer(config, device, dist).fit()
    finally:
        if owns_group:
            teardown_distributed()

"""The pixel baselines: a model trained on RGB images — decoded by the codec
(:func:`~latentcache.pixels.decode.run_decode`) or the originals — with the same training
loop as the latent models (``train_one_epoch``, ``evaluate``, optimizers, schedules, run
files), for the images' task (``latentcache.tasks``): ``resnet50`` for classification,
``deeplabv3-resnet50`` for segmentation.

::

    ImageTrainConfig ─► list images: decoded index.json | dataset adapter (originals)
      └► the task's loaders (PIXEL_DATA: data.py, seg_data.py)
           classification: resize 256, random crop 224, flip | resize 256, center crop 224
           segmentation (seg_data.py): image and mask scaled (scale_min..scale_max), cropped
             (crop, padded with 255) and flipped together | whole images, batched by size
      └► create_classifier(model, 3, classes) (a model of the task, reading images)
         ─► train_one_epoch / evaluate per epoch: the task's loss, meter and score
      └► RunFiles: config.json (+ initialised_from), metrics.jsonl, last.pt / best.pt,
         curves.png, eval_<split>.json, confusion_<split>.png

Classification's sizes are gupta2024's code's (``Resize(256)``, ``RandomCrop(224)``,
flip); ``resize`` is classification's alone (None: the images as they are; segmentation
trains at the images' own size times the random scale, and ignores it).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from latentcache.errors import ConfigError
from latentcache.pixels.data import ClassificationImages, split_samples
from latentcache.tasks import Task, get_task

__all__ = [
    "ImageTrainConfig",
    "PIXEL_DATA",
    "run_image_training",
    "evaluate_image_run",
    "list_images",
]

logger = logging.getLogger(__name__)

SOURCES = ("decoded", "original")


@dataclass(frozen=True)
class ImageTrainConfig:
    """Train ``model`` on images: ``source`` decoded (``images`` = a decode output folder) or
    original (``images`` = the dataset root, listed by the ``dataset`` adapter)."""

    source: str
    images: str | None
    out: str
    dataset: str | None = None
    dataset_options: dict = field(default_factory=dict)
    model: str = "resnet50"
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.01
    head_lr_mult: float = 1.0  # as TrainConfig: the model's head learns at lr x this
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True  # as TrainConfig: SGD's Nesterov momentum (train.schedule)
    fused_optimizer: bool = True  # as TrainConfig: fused SGD/AdamW on CUDA (train.schedule)
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    label_smoothing: float = 0.0
    train_split: str = "train"
    eval_split: str | None = None
    resize: int | None = 256  # classification: the short side before the crop (None: none)
    crop: int = 224
    flip: bool = True
    scale_min: float = 0.5  # segmentation: the random scale of image and mask
    scale_max: float = 2.0
    workers: int = 0
    device: str = "auto"
    seed: int = 0
    max_batches: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f'Invalid image source "{self.source}", should be one of {SOURCES}')
        if self.source == "original" and not self.dataset:
            raise ConfigError("original images need a dataset adapter name")
        if not 1 <= self.crop <= (self.resize or self.crop):
            raise ConfigError(f"crop={self.crop}, resize={self.resize}: need 1 <= crop <= resize")
        if not 0 < self.scale_min <= self.scale_max:
            raise ConfigError(
                f"scale_min={self.scale_min}, scale_max={self.scale_max}: need 0 < min <= max"
            )
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"Invalid {name} {getattr(self, name)!r}, should be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ImageTrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"Unknown image train config keys {unknown}; valid: {sorted(known)}")
        return cls(**d)


def list_images(config: ImageTrainConfig) -> tuple[Path, list[str], list[dict], str]:
    """(root, classes, samples, task) with samples {path (relative), label, split, target
    (dense tasks: the targets' file, relative)} and the name of their task."""
    if config.source == "decoded":
        from latentcache.pixels.decode import read_image_index

        index = read_image_index(config.images)
        task = index.get("task", "classification")  # decodes before tasks: classification
        return Path(config.images), list(index["classes"]), list(index["samples"]), task
    from latentcache.datasets import build_index

    index = build_index(config.dataset, config.images, **config.dataset_options)
    return index.root, list(index.classes), [s.to_dict() for s in index.samples], index.task


def _segmentation(task):
    from latentcache.pixels.seg_data import SegmentationImages

    return SegmentationImages(task)


# the image loaders of each task that has a pixel baseline (data.py, seg_data.py)
PIXEL_DATA = {"classification": ClassificationImages, "segmentation": _segmentation}


def pixel_data(task: Task):
    """The image loaders of ``task`` (ConfigError for a task without a pixel baseline)."""
    if task.name not in PIXEL_DATA:
        raise ConfigError(
            f"the pixel baselines train {sorted(PIXEL_DATA)} models; these images are {task.name}"
        )
    return PIXEL_DATA[task.name](task)


def _loader(config, root, samples, split: str, train: bool, task: Task, epoch: int = -1):
    chosen = split_samples(samples, split)
    return pixel_data(task).loader(config, root, chosen, train, epoch)


def _prepare(device: torch.device, task: Task):
    """Batch dict -> ([image], the task's targets) on ``device`` (the loader augmented both)."""

    def prepare(batch: dict, train: bool, generator):
        image = batch["image"].to(device, non_blocking=True)
        return [image], task.map_targets(task.targets_to(batch, device), None, None, None)

    return prepare


def _eval_split(config: ImageTrainConfig, samples: list[dict]) -> str | None:
    splits = {s["split"] for s in samples}
    if config.eval_split is not None:
        return config.eval_split
    return next((s for s in ("validate", "val", "test") if s in splits), None)


def _build_model(
    config: ImageTrainConfig, num_classes: int, task: Task | None = None, **extra
) -> torch.nn.Module:
    """The registered pixel model, checked to read images and (``task``) to predict it."""
    from latentcache.train.models import create_classifier

    if task is not None:
        from latentcache.train.loop import check_model_task

        check_model_task(config.model, task)
    try:
        model = create_classifier(config.model, 3, num_classes, **{**config.model_kwargs, **extra})
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    if tuple(model.inputs) != ("image",):
        raise ConfigError(f'model "{config.model}" takes {model.inputs}, not images')
    return model


def run_image_training(config: ImageTrainConfig, codec: dict | None = None) -> dict:
    """Train on images; ``codec`` is the identity recorded for decoded images ({} originals)."""
    from latentcache.train.distributed import resolve_device
    from latentcache.train.loop import evaluate, train_one_epoch
    from latentcache.train.run_files import RunFiles
    from latentcache.train.schedule import build_optimizer, build_scheduler

    device = resolve_device(config.device)
    root, classes, samples, task_name = list_images(config)
    task = get_task(task_name)
    eval_split = _eval_split(config, samples)
    torch.manual_seed(config.seed)
    model = _build_model(config, len(classes), task).to(device)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    record = {
        "codec": codec or {},
        "classes": classes,
        "inputs": ["image"],
        "task": task.name,
        "initialised_from": dict(model.initialised_from),
    }
    files = RunFiles(Path(config.out), config.to_dict(), record)
    files.start(0)
    prepare, best, metrics, meter = _prepare(device, task), -1.0, {}, None
    eval_loader = _loader(config, root, samples, eval_split, False, task) if eval_split else None
    for epoch in range(config.epochs):
        loader = _loader(config, root, samples, config.train_split, True, task, epoch)
        batches = _limit(loader, config.max_batches)
        metrics = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        metrics |= train_one_epoch(
            model,
            batches,
            prepare,
            optimizer,
            label_smoothing=config.label_smoothing,
            progress=config.progress,
            task=task,
        )
        scheduler.step()
        if eval_loader is not None:
            meter = evaluate(model, eval_loader, prepare, len(classes), task=task)
            summary = meter.summary()
            metrics |= {f"eval_{k}": summary[k] for k in task.record_keys}
        score = metrics.get(f"eval_{task.score_key}", metrics["train_top1"])
        is_best, best = score > best, max(score, best)
        state = {"model": model.state_dict(), "epoch": epoch + 1, "best_top1": best}
        files.end_epoch(metrics, state, is_best)
        parts = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        logger.info("epoch %d/%d %s", epoch + 1, config.epochs, parts)
    files.finish(meter, classes, eval_split)
    return {"run_dir": str(config.out), "epochs": config.epochs, "best_top1": best, **metrics}


def _limit(loader, max_batches: int | None):
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            return
        yield batch


def evaluate_image_run(
    run_dir: str | os.PathLike,
    split: str = "test",
    *,
    checkpoint: str = "best",
    batch_size: int | None = None,
    device: str = "auto",
) -> dict:
    """The task's scores of an image run's checkpoint on ``split`` (deterministic: center
    crop, or whole images for segmentation), like ``evaluate_run``."""
    from latentcache.train.checkpoint import load_checkpoint
    from latentcache.train.distributed import resolve_device
    from latentcache.train.evaluate import find_checkpoint
    from latentcache.train.loop import evaluate

    path = find_checkpoint(run_dir, checkpoint)
    state = load_checkpoint(path)
    config = ImageTrainConfig.from_dict(state["config"])
    if batch_size:
        config = ImageTrainConfig.from_dict({**config.to_dict(), "batch_size": batch_size})
    dev = resolve_device(device)
    root, classes, samples, task_name = list_images(config)
    task = get_task(task_name)
    if list(classes) != list(state["classes"]):
        raise ConfigError(f"{config.images}: classes differ from those {path} was trained on")
    model = _build_model(config, len(classes), task, pretrained=False)
    model.load_state_dict(state["model"])
    model.to(dev)
    start = time.perf_counter()
    loader = _loader(config, root, samples, split, False, task)
    meter = evaluate(model, loader, _prepare(dev, task), len(classes), task=task)
    return meter.summary(classes) | {
        "split": split,
        "checkpoint": path.name,
        "epoch": int(state["epoch"]),
        "model": config.model,
        "task": task.name,
        "eval_seconds": time.perf_counter() - start,
    }

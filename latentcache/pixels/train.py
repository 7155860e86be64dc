"""The pixel baseline: a classifier (``resnet50``) trained on RGB images — decoded by the
codec (:func:`~latentcache.pixels.decode.run_decode`) or the originals — with the same
training loop as the latent models (``train_one_epoch``, ``evaluate``, optimizers,
schedules, checkpoints).

::

    ImageTrainConfig ─► list images: decoded index.json | dataset adapter (originals)
      └► ImageList (Pillow ─► RGB) ─► resize 256, random crop 224, flip (train)
                                       resize 256, center crop 224 (eval)   ─► ImageNet normalize
      └► create_classifier(model, 3, classes) ─► train_one_epoch / evaluate per epoch
      └► metrics.jsonl, last.pt / best.pt, curves.png, eval_<split>.json

Crop sizes are gupta2024's code's (``Resize(256)``, ``RandomCrop(224)``, flip).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from latentcache.errors import ConfigError

__all__ = ["ImageTrainConfig", "run_image_training", "evaluate_image_run", "list_images"]

logger = logging.getLogger(__name__)

SOURCES = ("decoded", "original")
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet


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
    resize: int = 256
    crop: int = 224
    flip: bool = True
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
        if not 1 <= self.crop <= self.resize:
            raise ConfigError(f"crop={self.crop}, resize={self.resize}: need 1 <= crop <= resize")
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


def list_images(config: ImageTrainConfig) -> tuple[Path, list[str], list[dict]]:
    """(root, classes, samples) with samples {path (relative), label, split}."""
    if config.source == "decoded":
        from latentcache.pixels.decode import read_image_index

        index = read_image_index(config.images)
        return Path(config.images), list(index["classes"]), list(index["samples"])
    from latentcache.datasets import build_index

    index = build_index(config.dataset, config.images, **config.dataset_options)
    return index.root, list(index.classes), [s.to_dict() for s in index.samples]


class ImageList(torch.utils.data.Dataset):
    """Images of one split as {"image": (3, crop, crop) float32, "label": int}."""

    def __init__(self, root: Path, samples: list[dict], transform) -> None:
        self.root, self.samples, self.transform = root, samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        s = self.samples[i]
        with Image.open(self.root / s["path"]) as im:
            rgb = im.convert("RGB")
        return {"image": self.transform(rgb), "label": int(s["label"])}


def _transform(config: ImageTrainConfig, train: bool):
    from torchvision import transforms as T

    steps = [T.Resize(config.resize)]
    if train:
        steps += [T.RandomCrop(config.crop)] + ([T.RandomHorizontalFlip()] if config.flip else [])
    else:
        steps += [T.CenterCrop(config.crop)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(_MEAN, _STD)])


def _loader(config, root, samples, split: str, train: bool, generator=None):
    chosen = [s for s in samples if s["split"] == split]
    if not chosen:
        raise ConfigError(f'no images in split "{split}"')
    return torch.utils.data.DataLoader(
        ImageList(root, chosen, _transform(config, train)),
        batch_size=config.batch_size,
        shuffle=train,
        generator=generator,
        num_workers=config.workers,
        drop_last=False,
    )


def _prepare(device: torch.device):
    def prepare(batch: dict, train: bool, generator):
        return [batch["image"].to(device, non_blocking=True)], batch["label"].to(device)

    return prepare


def _eval_split(config: ImageTrainConfig, samples: list[dict]) -> str | None:
    splits = {s["split"] for s in samples}
    if config.eval_split is not None:
        return config.eval_split
    return next((s for s in ("validate", "val", "test") if s in splits), None)


def _build_model(config: ImageTrainConfig, num_classes: int, **extra) -> torch.nn.Module:
    from latentcache.train.models import create_classifier

    try:
        model = create_classifier(config.model, 3, num_classes, **{**config.model_kwargs, **extra})
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    if tuple(model.inputs) != ("image",):
        raise ConfigError(f'model "{config.model}" takes {model.inputs}, not images')
    return model


def run_image_training(config: ImageTrainConfig, codec: dict | None = None) -> dict:
    """Train on images; ``codec`` is the identity recorded for decoded images ({} originals)."""
    from latentcache.report.training import plot_training_curves
    from latentcache.train.checkpoint import save_checkpoint
    from latentcache.train.distributed import resolve_device
    from latentcache.train.loop import evaluate, train_one_epoch
    from latentcache.train.schedule import build_optimizer, build_scheduler

    device = resolve_device(config.device)
    root, classes, samples = list_images(config)
    eval_split = _eval_split(config, samples)
    torch.manual_seed(config.seed)
    model = _build_model(config, len(classes)).to(device)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    metrics = out / "metrics.jsonl"
    metrics.write_text("")
    prepare, best, record = _prepare(device), -1.0, {}
    eval_loader = _loader(config, root, samples, eval_split, False) if eval_split else None
    for epoch in range(config.epochs):
        torch.manual_seed(config.seed * 1_000_003 + epoch)  # torchvision's random crops and flips
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        loader = _loader(config, root, samples, config.train_split, True, gen)
        batches = _limit(loader, config.max_batches)
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        record |= train_one_epoch(model, batches, prepare, optimizer, progress=config.progress)
        scheduler.step()
        if eval_loader is not None:
            s = evaluate(model, eval_loader, prepare, len(classes)).summary()
            record |= {"eval_top1": s["top1"], "eval_top5": s["top5"], "eval_loss": s["loss"]}
        score = record.get("eval_top1", record["train_top1"])
        state = {
            "model": model.state_dict(),
            "epoch": epoch + 1,
            "config": config.to_dict(),
            "codec": codec or {},
            "classes": classes,
            "inputs": ["image"],
        }
        save_checkpoint(out / "last.pt", state)
        if score > best:
            best = score
            save_checkpoint(out / "best.pt", state)
        with open(metrics, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        parts = " ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float))
        logger.info("epoch %d/%d %s", epoch + 1, config.epochs, parts)
    plot_training_curves(metrics, out / "curves.png")
    return {"run_dir": str(out), "epochs": config.epochs, "best_top1": best, **record}


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
    """Top-1/top-5 of an image run's checkpoint on ``split`` (center crop), like ``evaluate_run``."""
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
    root, classes, samples = list_images(config)
    if list(classes) != list(state["classes"]):
        raise ConfigError(f"{config.images}: classes differ from those {path} was trained on")
    model = _build_model(config, len(classes), pretrained=False)
    model.load_state_dict(state["model"])
    model.to(dev)
    start = time.perf_counter()
    meter = evaluate(
        model, _loader(config, root, samples, split, False), _prepare(dev), len(classes)
    )
    return meter.summary(classes) | {
        "split": split,
        "checkpoint": path.name,
        "epoch": int(state["epoch"]),
        "model": config.model,
        "eval_seconds": time.perf_counter() - start,
    }

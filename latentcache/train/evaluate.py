"""Evaluate a training run's checkpoint on a store split, deterministically (center crop).

::

    RUN_DIR/best.pt (or last.pt) ─► codec check against STORE ─► model, stats, classes
      └► LatentStream(split, no shuffle) ─► the store task's meter
      └► classification: {"top1", "top5", "per_class", "confusion", ...}
         segmentation: {"miou", "per_class_iou", "pixel_accuracy", "confusion", ...}
         ─► eval_<split>.json, confusion_<split>.png
      └► the first few samples on the task's picture sheet (segmentation: image | decoded |
         truth | prediction) ─► pictures_<split>.png (report/pictures.py)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from latentcache.errors import ConfigError, RunNotFoundError
from latentcache.train.augment import AugmentConfig, LatentStats, LatentTransform
from latentcache.train.checkpoint import check_codec, load_checkpoint
from latentcache.train.data import StreamSpec, build_loader
from latentcache.train.distributed import resolve_device
from latentcache.train.feed import DeviceFeeder
from latentcache.train.loop import amp_context, check_model_task, evaluate, make_prepare
from latentcache.train.models import create_classifier

__all__ = ["evaluate_run", "find_checkpoint", "resolve_split", "CHECKPOINTS"]

logger = logging.getLogger(__name__)

CHECKPOINTS = ("best", "last")


def find_checkpoint(run_dir: str | os.PathLike, which: str = "best") -> Path:
    """``best.pt`` (falling back to ``last.pt``) or ``last.pt`` of a run folder."""
    if which not in CHECKPOINTS:
        raise ConfigError(f'Invalid checkpoint "{which}", should be one of {list(CHECKPOINTS)}')
    run_dir = Path(run_dir)
    names = ["best.pt", "last.pt"] if which == "best" else ["last.pt"]
    for name in names:
        if (run_dir / name).is_file():
            return run_dir / name
    raise RunNotFoundError(
        f"No {' or '.join(names)} in {run_dir}: is it a `latentcache train` --out folder?"
    )


SPLIT_ALIASES = {"val": "validate", "validate": "val"}  # VOC says val, COCO's adapter validate


def resolve_split(split: str, splits: list[str]) -> str:
    """``split``, or its other name (val / validate) when only that one is in the store."""
    if split in splits:
        return split
    other = SPLIT_ALIASES.get(split)
    if other in splits:
        logger.info('split "%s": the store calls it "%s"', split, other)
        return other
    raise ConfigError(f'Split "{split}" is not in the store; its splits are {splits}')


def _check_store(state: dict, store, store_path) -> None:
    check_codec(state["codec"], store.codec, store_path)
    if list(store.classes) != list(state["classes"]):
        raise ConfigError(
            f"store {store_path} has classes {list(store.classes)[:5]}... ({len(store.classes)}), "
            f"the checkpoint was trained on {list(state['classes'])[:5]}... ({len(state['classes'])})"
        )
    if "num_channels" in state and int(store.num_channels) != int(state["num_channels"]):
        raise ConfigError(
            f"store {store_path} has M={store.num_channels}, the checkpoint M={state['num_channels']}"
        )


def _build_model(state: dict, num_channels: int, store_inputs=None) -> torch.nn.Module:
    cfg = state["config"]
    kwargs = {
        **cfg.get("model_kwargs", {}),
        "pretrained": False,
    }  # weights come from the checkpoint
    if state.get("inputs") and "inputs" not in kwargs:  # what it was trained on
        kwargs["inputs"] = tuple(state["inputs"])
    model = create_classifier(
        cfg["model"], num_channels, len(state["classes"]), store_inputs, **kwargs
    )
    model.load_state_dict(state["model"])
    return model


def evaluate_run(
    run_dir: str | os.PathLike,
    store_path: str | os.PathLike,
    split: str = "test",
    *,
    checkpoint: str = "best",
    fmt: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    workers: int = 0,
    write: bool = True,
    codec_checkpoint: str | None = None,
    pictures: int = 4,
    pictures_dir: str | os.PathLike | None = None,
    codec=None,
) -> dict:
    """Top-1/top-5, per-class accuracy and confusion of a run's checkpoint on ``split``.
    ``pictures``: samples on the task's picture sheet ``pictures_<split>.png`` (0: none),
    written to ``pictures_dir`` (default: the run folder when ``write``); ``codec``: the
    store's, for the decoded images (None: loaded where it can be)."""
    from latentcache.store import open_store

    path = find_checkpoint(run_dir, checkpoint)
    state = load_checkpoint(path)
    store = open_store(store_path)
    split = resolve_split(split, list(store.splits))
    _check_store(state, store, store_path)
    cfg = state["config"]
    dev = resolve_device(device)
    task = store.task_unit
    check_model_task(state["config"]["model"], task)
    model = _build_model(state, int(store.num_channels), store.inputs).to(dev)
    augment = AugmentConfig(resize=cfg["resize"], crop=cfg["crop"], flip=False)
    stats = LatentStats.from_dict(state["stats"])
    transform = LatentTransform(model.inputs, stats, augment, store_inputs=store.inputs)
    spec = StreamSpec(
        store=str(store_path),
        split=split,
        fmt=fmt or cfg["format"],
        fields=transform.fields,
        batch_size=batch_size or cfg["batch_size"],
        codec_checkpoint=codec_checkpoint or cfg.get("codec_checkpoint"),
    )
    loader = build_loader(spec, workers, cfg["resize"], recycle=True)
    prepare = make_prepare(transform, dev, channels_last=False, task=task)
    batches = DeviceFeeder(dev)(loader)  # pinned ring + copy stream on CUDA
    amp = lambda: amp_context(dev, cfg["amp"])  # noqa: E731
    meter = evaluate(model, batches, prepare, len(state["classes"]), amp, task)
    result = meter.summary(list(state["classes"])) | {
        "split": split,
        "checkpoint": path.name,
        "epoch": int(state["epoch"]),
        "store": str(store_path),
        "model": cfg["model"],
        "task": task.name,
    }
    if write:
        _write(Path(run_dir), split, result)
    where = pictures_dir or (run_dir if write else None)
    if pictures > 0 and where is not None:
        from latentcache.report.pictures import eval_pictures

        classes, resize = list(state["classes"]), cfg["resize"]
        eval_pictures(
            task, store, spec, resize, prepare, model, amp, classes, where, pictures, codec
        )
    return result


def _write(run_dir: Path, split: str, result: dict) -> None:
    from latentcache.report.training import plot_confusion_matrix

    (run_dir / f"eval_{split}.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    if "confusion" in result:  # classification and segmentation
        classes = list(result.get("per_class") or result["per_class_iou"])
        plot_confusion_matrix(result["confusion"], classes, run_dir / f"confusion_{split}.png")

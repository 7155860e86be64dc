"""The few-shot options of a detection fine-tuning run (TFA, ``latentcache/train/fewshot.py``)::

classes = [15 base]      the detector learns (and is evaluated on) these classes only: the
                         other classes' boxes are dropped, images left without a box are
                         left out of training (as Detectron2 does), labels renumbered
shots = k                train on a seeded k-shot sample of the train split: k objects of
                         every class, an image keeping only the boxes it was drawn for
train_only = "box_predictor"   everything but the box classifier and regressor frozen
detector = a run of fewer classes (the base run): its box predictor grows to these classes
novel = [5 novel]        the summary's nAP50: the mean AP50 of these classes
"""

from __future__ import annotations

import torch

from latentcache.errors import ConfigError
from latentcache.finetune.detection import DetectionImages
from latentcache.train.fewshot import sample_kshot, subset_targets

__all__ = ["TRAIN_ONLY", "FewShotImages", "chosen_classes", "fewshot_images", "grow_detector"]

TRAIN_ONLY = ("all", "box_predictor")


class FewShotImages(DetectionImages):
    """DetectionImages whose targets keep, per image, the boxes of some classes (dataset
    contiguous ids), renumbered into their place among the run's classes."""

    def __init__(self, root, samples, category_ids, keep: dict[str, list[int]], order: list[int]):
        super().__init__(root, samples, category_ids)
        self.keep = keep
        self.lookup = torch.full((len(category_ids),), -1, dtype=torch.int64)
        self.lookup[torch.tensor(order, dtype=torch.int64)] = torch.arange(len(order))

    def __getitem__(self, i: int):
        x, t = super().__getitem__(i)
        t = subset_targets(t, self.keep[self.samples[i].key], renumber=False)
        t["labels"] = self.lookup[t["labels"]]
        return x, t


def chosen_classes(config, index) -> list[str]:
    """The run's classes: ``config.classes`` (checked against the dataset's), else all."""
    if not config.classes:
        return list(index.classes)
    unknown = [c for c in config.classes if c not in index.classes]
    if unknown or len(set(config.classes)) != len(config.classes):
        raise ConfigError(
            f"classes {unknown or config.classes}: should be distinct classes of "
            f"{index.name!r} ({list(index.classes)})"
        )
    for c in config.novel or ():
        if c not in config.classes:
            raise ConfigError(f"novel class {c!r} is not among the run's classes")
    return list(config.classes)


def _labels(index, samples) -> dict[str, list[int]]:
    """Every sample's box labels (dataset contiguous ids), crowd / difficult boxes left out."""
    from latentcache.datasets.boxes import read_boxes
    from latentcache.errors import SampleError

    position = {int(c): i for i, c in enumerate(index.options["category_ids"])}
    out = {}
    for s in samples:
        try:
            raw = read_boxes(index.root, s.target) if s.target else None
        except SampleError as exc:
            raise ConfigError(f"{s.target}: {exc}") from None
        if raw is None:
            out[s.key] = []
            continue
        ids = raw.category_ids[~raw.iscrowd]
        out[s.key] = [position[int(c)] for c in ids if int(c) in position]
    return out


def fewshot_images(config, index, split: str, classes: list[str], train: bool):
    """The DetectionImages of ``split`` for these ``classes`` (and ``config.shots`` when
    ``train``); plain DetectionImages when the run uses every class and every image."""
    samples, ids = index.split(split), index.options["category_ids"]
    order = [list(index.classes).index(c) for c in classes]
    subset = len(classes) != len(index.classes)
    if not (subset or (train and config.shots)):
        return DetectionImages(index.root, samples, ids)
    if train and config.shots:
        keep = sample_kshot(_labels(index, samples), order, config.shots, config.seed)
    elif train:  # base training: images without a box of these classes are left out
        labels = _labels(index, samples)
        keep = {k: order for k, v in labels.items() if set(v) & set(order)}
    else:
        keep = {s.key: order for s in samples}
    chosen = [s for s in samples if s.key in keep]
    if not chosen:
        raise ConfigError(f"split {split!r} has no image with a box of {classes}")
    return FewShotImages(index.root, chosen, ids, keep, order)


def grow_detector(model, state_classes: list[str], classes: list[str], run: str) -> None:
    """A detector of ``state_classes`` (a base run) made a detector of ``classes``."""
    from latentcache.train.fewshot import expand_box_predictor

    if list(state_classes) == list(classes):
        return
    if not set(state_classes) < set(classes):
        raise ConfigError(
            f"detector {run} knows {len(state_classes)} classes that are not a subset of the "
            f"run's {len(classes)} classes"
        )
    expand_box_predictor(model, [classes.index(c) for c in state_classes], len(classes))

"""The pixel baselines' images, per task: loaders that the trainer finds by the task's name
(``train.PIXEL_DATA``), so that it names no task.

::

    .loader(config, root, samples, train, epoch) ─► DataLoader of dicts
                        {"image": (B, 3, H, W) float32 (ImageNet-normalised),
                         task.target_keys[0]: the targets ("label" (B,) | "mask" (B, H, W))}
    classification    resize 256, random crop 224, flip (train) | resize 256, center crop 224
                      (gupta2024's code's sizes; torchvision's transforms)
    segmentation      seg_data.py: random scale, crop and flip of image and mask together
                      (train) | whole images, batched by size (eval)

Every random draw of an epoch is seeded by ``(seed, epoch)``: the sample order by the
loader's generator; classification's crops and flips by torch's global generator (reseeded
for the epoch, or in each DataLoader worker from the loader's generator); segmentation's by
one generator per sample (seg_data.py), whatever the number of workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentcache.errors import ConfigError

__all__ = ["MEAN", "STD", "ClassificationImages", "ImageList", "epoch_seed", "split_samples"]

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet


def epoch_seed(seed: int, epoch: int) -> int:
    """One 63-bit seed per (run seed, epoch) (epoch -1: evaluation)."""
    state = np.random.SeedSequence([seed, epoch + 1]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


def split_samples(samples: list[dict], split: str) -> list[dict]:
    chosen = [s for s in samples if s["split"] == split]
    if not chosen:
        raise ConfigError(f'no images in split "{split}"')
    return chosen


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


class ClassificationImages:
    """Resize, crop and flip with torchvision's transforms; one label per image."""

    def __init__(self, task) -> None:
        self.task = task

    @staticmethod
    def transform(config, train: bool):
        from torchvision import transforms as T

        steps = [T.Resize(config.resize)] if config.resize else []
        if train:
            steps += [T.RandomCrop(config.crop)]
            steps += [T.RandomHorizontalFlip()] if config.flip else []
        else:
            steps += [T.CenterCrop(config.crop)]
        return T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])

    def loader(self, config, root: Path, samples: list[dict], train: bool, epoch: int = -1):
        seed = config.seed * 1_000_003 + epoch
        if train:
            torch.manual_seed(seed)  # torchvision's crops and flips draw from the global one
        return torch.utils.data.DataLoader(
            ImageList(root, samples, self.transform(config, train)),
            batch_size=config.batch_size,
            shuffle=train,
            generator=torch.Generator().manual_seed(seed),  # order, and each worker's seed
            num_workers=config.workers,
            drop_last=False,
        )

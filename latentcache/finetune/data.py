"""Images for fine-tuning, from the dataset adapters (never from a latent store).

::

    build_index(dataset) ─► split's samples ─► header sizes ─► buckets of one padded size
      └► ImageSplit[i]: load_image (EXIF, any mode -> RGB) ─► (3, H, W) uint8 ─► pad_image /64
      └► BucketBatches(epoch): seeded shuffle within buckets, batches never mix sizes
             ─► DataLoader ─► x (B, 3, Hp, Wp) float in [0, 1], labels, sizes

Images are padded exactly as ``encode`` pads them, so the codec sees in training the
tensors it will see when the dataset is re-encoded.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from latentcache.datasets.base import DatasetIndex, Sample
from latentcache.errors import ConfigError

__all__ = ["ImageSplit", "BucketBatches", "load_split", "image_loader", "choose_eval_split"]


def choose_eval_split(index: DatasetIndex, train: str, name: str | None) -> str | None:
    """An explicit split must exist; default: validate, val or test, whichever exists."""
    splits = index.split_names
    for s in (train, name):
        if s is not None and s not in splits:
            raise ConfigError(
                f'Split "{s}" is not in dataset {index.name!r}; its splits are {splits}'
            )
    if name is not None:
        return name
    return next((s for s in ("validate", "val", "test") if s in splits and s != train), None)


def _padded(hw: tuple[int, int]) -> tuple[int, int]:
    return tuple(math.ceil(v / 64) * 64 for v in hw)


class ImageSplit(torch.utils.data.Dataset):
    """One split's images as padded uint8 tensors; ``buckets`` group rows of one padded size."""

    def __init__(self, root: Path, samples: list[Sample]) -> None:
        from latentcache.images import header_size

        self.root, self.samples = Path(root), list(samples)
        self.buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, s in enumerate(self.samples):
            hw = header_size(self.root / s.path)
            if hw is None:
                raise ConfigError(f"cannot read the image header of {self.root / s.path}")
            self.buckets[_padded(hw)].append(i)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, tuple[int, int]]:
        from latentcache.codec.latents import pad_image
        from latentcache.errors import SampleError
        from latentcache.images import load_image

        s = self.samples[i]
        try:
            rgb = load_image((self.root / s.path).read_bytes()).rgb
        except SampleError as exc:
            raise ConfigError(f"{self.root / s.path}: {exc}") from None
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)  # (3, H, W) uint8
        return pad_image(x[None].float())[0].to(torch.uint8), s.label, tuple(rgb.shape[:2])


class BucketBatches(torch.utils.data.Sampler):
    """Batches of indices of one padded size, in a seeded order per epoch (or in index order)."""

    def __init__(self, buckets: dict, batch_size: int, shuffle: bool, seed: int = 0) -> None:
        self.buckets, self.batch_size, self.shuffle, self.seed = buckets, batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        out = []
        for key in sorted(self.buckets):
            rows = list(self.buckets[key])
            if self.shuffle:
                rng.shuffle(rows)
            out += [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        if self.shuffle:
            rng.shuffle(out)
        return out

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return sum(math.ceil(len(r) / self.batch_size) for r in self.buckets.values())


def _collate(items) -> dict:
    xs, labels, sizes = zip(*items, strict=True)
    return {
        "x": torch.stack(xs).float().div_(255.0),  # (B, 3, Hp, Wp)
        "label": torch.tensor(labels, dtype=torch.int64),
        "sizes": [tuple(s) for s in sizes],
    }


def load_split(index: DatasetIndex, split: str) -> ImageSplit:
    samples = index.split(split)
    if not samples:
        raise ConfigError(f"dataset {index.name!r} has no images in split {split!r}")
    return ImageSplit(index.root, samples)


def image_loader(
    split: ImageSplit, batch_size: int, shuffle: bool, seed: int, workers: int, pin: bool
) -> torch.utils.data.DataLoader:
    """A DataLoader of same-size batches; ``loader.batch_sampler.set_epoch(e)`` reseeds it."""
    sampler = BucketBatches(split.buckets, batch_size, shuffle, seed)
    return torch.utils.data.DataLoader(
        split,
        batch_sampler=sampler,
        collate_fn=_collate,
        num_workers=workers,
        pin_memory=pin,
        multiprocessing_context="spawn" if workers else None,
        persistent_workers=False,
    )

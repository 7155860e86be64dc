"""Images and their masks for the segmentation pixel baseline, augmented together.

::

    sample {path, target}  ─► Pillow RGB (H, W)  +  task.read_targets(target): mask (H, W) uint8
    train  scale s ~ U[scale_min, scale_max]: image bilinear, mask nearest, to (sH, sW)
           ─► normalise ─► pad to >= crop x crop (image 0 = the ImageNet mean, mask 255)
           ─► one random crop x crop window and one flip, the same for image and mask
    eval   whole images, unscaled, normalised; a batch holds images of one size only
           (SizeBatches), so no image is padded and the logits are scored at its own size

The draws of sample ``i`` in epoch ``e`` come from a generator seeded by ``(seed, e, i)``:
the same augmentations whichever worker loads it. 255 = ignore (the task's loss and meter).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentcache.datasets.masks import IGNORE_INDEX
from latentcache.pixels.data import MEAN, STD, epoch_seed

__all__ = ["SegmentationImages", "ImageMaskList", "SizeBatches", "augment_pair"]


def _load(root: Path, sample: dict, task) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image and (H, W) uint8 mask of ``sample`` (mask size checked)."""
    from PIL import Image

    with Image.open(root / sample["path"]) as im:
        rgb = np.array(im.convert("RGB"))
    mask = task.read_targets(sample.get("target"), root, rgb.shape[:2])["mask"]
    return rgb, mask


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    return (x - mean) / std


def augment_pair(
    rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator, crop: int, scale, flip: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random scale, crop and flip applied to both: ((3, crop, crop) normalised image,
    (crop, crop) uint8 mask, 255 where the window leaves the image)."""
    from PIL import Image

    s = float(rng.uniform(scale[0], scale[1]))
    h, w = mask.shape
    size = (max(1, round(w * s)), max(1, round(h * s)))  # Pillow's (W, H)
    if size != (w, h):
        rgb = np.array(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        mask = np.array(Image.fromarray(mask).resize(size, Image.NEAREST))
    h, w = mask.shape
    image = torch.zeros(3, max(h, crop), max(w, crop))
    target = torch.full((max(h, crop), max(w, crop)), IGNORE_INDEX, dtype=torch.uint8)
    image[:, :h, :w] = _normalised(rgb)
    target[:h, :w] = torch.from_numpy(np.ascontiguousarray(mask))
    top = int(rng.integers(0, target.shape[0] - crop + 1))
    left = int(rng.integers(0, target.shape[1] - crop + 1))
    image = image[:, top : top + crop, left : left + crop]
    target = target[top : top + crop, left : left + crop]
    if flip and rng.random() < 0.5:
        image, target = image.flip(-1), target.flip(-1)
    return image.contiguous(), target.contiguous()


class ImageMaskList(torch.utils.data.Dataset):
    """{"image", "mask", "label": -1} per sample: augmented (``epoch`` >= 0) or whole."""

    def __init__(self, root: Path, samples: list[dict], task, config, epoch: int = -1) -> None:
        self.root, self.samples, self.task = Path(root), samples, task
        self.config, self.epoch = config, epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        rgb, mask = _load(self.root, self.samples[i], self.task)
        cfg = self.config
        if self.epoch < 0:
            image, target = _normalised(rgb), torch.from_numpy(np.ascontiguousarray(mask))
        else:
            rng = np.random.default_rng([cfg.seed, self.epoch, i])
            scale = (cfg.scale_min, cfg.scale_max)
            image, target = augment_pair(rgb, mask, rng, cfg.crop, scale, cfg.flip)
        return {"image": image, "mask": target, "label": -1}


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size[1], im.size[0]


class SizeBatches(torch.utils.data.Sampler):
    """Deterministic evaluation batches: the split's images in order, grouped by size (first
    seen first), at most ``batch_size`` per batch, so a batch stacks without padding."""

    def __init__(self, sizes: list[tuple[int, int]], batch_size: int) -> None:
        groups: dict[tuple[int, int], list[int]] = {}
        for i, hw in enumerate(sizes):
            groups.setdefault(tuple(hw), []).append(i)
        self.batches = [
            idx[j : j + batch_size]
            for idx in groups.values()
            for j in range(0, len(idx), batch_size)
        ]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class SegmentationImages:
    """The segmentation task's loaders (``train.PIXEL_DATA["segmentation"]``)."""

    def __init__(self, task) -> None:
        self.task = task

    def loader(self, config, root: Path, samples: list[dict], train: bool, epoch: int = -1):
        task = self.task
        if train:
            return torch.utils.data.DataLoader(
                ImageMaskList(root, samples, task, config, epoch),
                batch_size=config.batch_size,
                shuffle=True,
                generator=torch.Generator().manual_seed(epoch_seed(config.seed, epoch)),
                num_workers=config.workers,
                drop_last=False,
            )
        sizes = [_image_size(Path(root) / s["path"]) for s in samples]
        return torch.utils.data.DataLoader(
            ImageMaskList(root, samples, task, config),
            batch_sampler=SizeBatches(sizes, config.batch_size),
            num_workers=config.workers,
        )

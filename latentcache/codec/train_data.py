"""Codec training data: the image files, decoded once into memory, and random crops.

::

    images (folder or a dataset's train split) ──► RGB uint8 in memory (+ sha256 per file)
      │ per step: B random crops, random h/v flips                      x (B, 3, crop, crop)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from latentcache.codec.train_config import TrainingImage
from latentcache.errors import ConfigError
from latentcache.images import IMAGE_EXTENSIONS, list_images

__all__ = ["list_image_files", "load_training_images", "sample_batch"]

logger = logging.getLogger(__name__)


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); an empty folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"image folder not found: {folder}")
    files = list_images(folder)
    if not files:
        raise ConfigError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    return files


def _upscale_to(rgb: np.ndarray, size: int) -> np.ndarray:
    """Bicubic upscale so that the shorter side is at least ``size`` (small photos)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = size / min(h, w)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(new, Image.BICUBIC))


def load_training_images(
    files: list[Path], root: Path, crop: int
) -> tuple[list[torch.Tensor], list[TrainingImage]]:
    """Decode ``files`` to (3, H, W) uint8 tensors, each at least ``crop`` on its shorter side."""
    from latentcache.images import load_image

    tensors, records = [], []
    for path in files:
        loaded = load_image(Path(path).read_bytes())
        rgb = loaded.rgb
        if min(rgb.shape[:2]) < crop:
            logger.warning("%s is %dx%d, upscaled to crop %d", path, *rgb.shape[:2], crop)
            rgb = _upscale_to(rgb, crop)
        name = Path(path).relative_to(root).as_posix()
        records.append(TrainingImage(name, loaded.sha256, *loaded.rgb.shape[:2]))
        tensors.append(torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous())
    return tensors, records


def sample_batch(
    images: list[torch.Tensor], batch_size: int, crop: int, generator: torch.Generator
) -> torch.Tensor:
    """``batch_size`` random crops with random horizontal/vertical flips, in [0, 1]."""
    picks = torch.randint(len(images), (batch_size,), generator=generator).tolist()
    crops = []
    for i in picks:
        img = images[i]
        top = int(torch.randint(img.shape[1] - crop + 1, (1,), generator=generator))
        left = int(torch.randint(img.shape[2] - crop + 1, (1,), generator=generator))
        x = img[:, top : top + crop, left : left + crop]
        flips = torch.rand(2, generator=generator).tolist()
        if flips[0] < 0.5:
            x = x.flip(-1)
        if flips[1] < 0.5:
            x = x.flip(-2)
        crops.append(x)
    return torch.stack(crops).float().div_(255.0)  # (B, 3, crop, crop)

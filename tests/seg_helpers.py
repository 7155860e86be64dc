"""Tiny segmentation datasets from real CC0 photos (scikit-image), with masks that are a
known function of pixel position, written as palette (P) and grayscale (L) PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SEG_CLASSES = ("background", "a", "b", "c")
# odd sizes: not multiples of 16 or 64, so the canvas offsets are not multiples of 16
SEG_SIZES = ((75, 101), (90, 67), (53, 130), (97, 97), (66, 83), (81, 59))


def position_mask(h: int, w: int) -> np.ndarray:
    """The mask the alignment test checks: class (y // 16 + 2 * (x // 16)) % 4 per pixel,
    255 on the image's last row and column (VOC-like outline pixels)."""
    y, x = np.mgrid[0:h, 0:w]
    mask = ((y // 16 + 2 * (x // 16)) % len(SEG_CLASSES)).astype(np.uint8)
    mask[-1, :] = 255
    mask[:, -1] = 255
    return mask


def write_seg_dataset(root: Path, sizes=SEG_SIZES, split_of=None):
    """JPEG photos and their masks under ``root``; returns the DatasetIndex."""
    from PIL import Image
    from skimage import data

    from latentcache.datasets.base import DatasetIndex, Sample
    from latentcache.datasets.masks import write_palette_mask

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    samples = []
    for i, (h, w) in enumerate(sizes):
        split = split_of(i) if split_of else ("train" if i % 3 else "val")
        rgb = photos[i % len(photos)][7 * i : 7 * i + h, 11 * i : 11 * i + w]
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(rgb)).save(root / f"images/im{i}.jpg", quality=92)
        mask = position_mask(h, w)
        if i % 2:
            write_palette_mask(root / f"masks/im{i}.png", mask)
        else:
            Image.fromarray(mask, "L").save(root / f"masks/im{i}.png")
        samples.append(Sample(f"im{i}", f"images/im{i}.jpg", -1, split, f"masks/im{i}.png"))
    return DatasetIndex("segtest", root, SEG_CLASSES, tuple(samples), task="segmentation")


def encode_seg_store(root: Path, out: Path, codec, formats=("zarr", "webdataset"), **kw):
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    index = write_seg_dataset(root, **kw)
    config = EncodeConfig(
        dataset="segtest", out=str(out), shard_size=3, workers=0, formats=tuple(formats)
    )
    return run_encode(config, codec, index=index)

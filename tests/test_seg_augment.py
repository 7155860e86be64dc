"""The alignment test: odd-sized images whose mask is a known function of position, encoded
with a real codec; after random crops and flips, every latent cell's target pixels are the
mask values the generator put under that cell's pixels (through the canvas offset)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from seg_helpers import SEG_SIZES, encode_seg_store, position_mask


@pytest.fixture(scope="module")
def seg_store_path(tmp_path_factory, tiny_codec):
    root = tmp_path_factory.mktemp("segaug")
    encode_seg_store(root / "data", root / "store", tiny_codec, split_of=lambda i: "train")
    return root / "store"


def _batch(path, fmt):
    from latentcache.train.data import StreamSpec, build_loader

    spec = StreamSpec(store=str(path), split="train", fmt=fmt, fields=("y_hat",), batch_size=8)
    (batch,) = list(build_loader(spec, workers=0))
    return batch


def _coordinates(batch):
    """y_hat replaced by each cell's (i + 1, j + 1) in its first two channels: after the
    transform, a cell says where it came from (0: padding added by the crop)."""
    y = batch["y_hat"]
    b, m, h, w = y.shape
    coords = torch.zeros_like(y)
    coords[:, 0] = torch.arange(1, h + 1)[:, None]
    coords[:, 1] = torch.arange(1, w + 1)[None, :]
    return {**batch, "y_hat": coords}


def _expected(key, i, j, rows, cols, flipped):
    """The generator's mask under cell (i, j)'s pixels, mirrored within the cell if flipped."""
    h, w = SEG_SIZES[int(key[2:])]
    top = (-(-h // 64) * 64 - h) // 2
    left = (-(-w // 64) * 64 - w) // 2
    mask = position_mask(h, w)
    r = 16 * i + np.arange(16) - top
    c = 16 * j + (np.arange(16)[::-1] if flipped else np.arange(16)) - left
    out = np.full((16, 16), 255, np.uint8)
    ok_r, ok_c = (r >= 0) & (r < h), (c >= 0) & (c < w)
    out[np.ix_(ok_r, ok_c)] = mask[np.ix_(r[ok_r], c[ok_c])]
    return out


@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
@pytest.mark.parametrize("crop", [3, 6, None])
def test_every_cell_keeps_the_mask_under_its_pixels(seg_store_path, fmt, crop):
    from latentcache.tasks import get_task
    from latentcache.train.augment import AugmentConfig, LatentStats, LatentTransform

    task = get_task("segmentation")
    batch = _coordinates(_batch(seg_store_path, fmt))
    assert len(batch["key"]) == len(SEG_SIZES)
    transform = LatentTransform(("y_hat",), LatentStats(), AugmentConfig(None, crop, True))
    checked, flips = 0, set()
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        (x,), mask = transform.apply(batch, True, gen, task)
        assert mask.dtype == torch.uint8 and mask.shape[-2:] == (16 * x.shape[-2], 16 * x.shape[-1])
        for b, key in enumerate(batch["key"]):
            ii, jj = x[b, 0].round().long(), x[b, 1].round().long()
            flipped = x.shape[-1] > 1 and bool((jj[0, 1] < jj[0, 0]) & (jj[0, 1] > 0))
            flips.add(flipped)
            for a in range(x.shape[-2]):
                for c in range(x.shape[-1]):
                    got = mask[b, 16 * a : 16 * a + 16, 16 * c : 16 * c + 16].numpy()
                    i, j = int(ii[a, c]) - 1, int(jj[a, c]) - 1
                    if i < 0 or j < 0:  # padding the crop added
                        assert (got == 255).all()
                        continue
                    assert np.array_equal(got, _expected(key, i, j, a, c, flipped)), (key, i, j)
                    checked += 1
    assert checked > 100 and flips == {True, False}


@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_evaluation_is_the_whole_image_unchanged(seg_store_path, fmt):
    from latentcache.tasks import get_task
    from latentcache.train.augment import AugmentConfig, LatentStats, LatentTransform

    batch = _coordinates(_batch(seg_store_path, fmt))
    transform = LatentTransform(("y_hat",), LatentStats(), AugmentConfig(None, 4, True))
    (x,), mask = transform.apply(batch, False, None, get_task("segmentation"))
    assert x.shape[-2:] == batch["y_hat"].shape[-2:] and torch.equal(mask, batch["mask"])
    for b, key in enumerate(batch["key"]):
        h, w = SEG_SIZES[int(key[2:])]
        top, left = (int(v) for v in batch["canvas_offset"][b])
        assert np.array_equal(mask[b, top : top + h, left : left + w].numpy(), position_mask(h, w))
        assert int((mask[b] != 255).sum()) == int((position_mask(h, w) != 255).sum())

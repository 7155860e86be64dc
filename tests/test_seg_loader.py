"""The segmentation loader: padded batches are decoded straight into recycled buffers, and
only their padding is refilled (zeros beside a latent, 255 around a mask) even in a buffer
that held a bigger batch; with or without recycling, in both layouts, in process and from
spawned workers, every row holds its sample. ``--cache`` counts the masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from seg_helpers import SEG_SIZES, encode_seg_store, position_mask

from latentcache.train.data import LatentStream, StreamSpec, build_loader

FIELDS = ("y_hat", "scales_hat")
ONE_SIZE = ((75, 101), (70, 90), (100, 120), (66, 83), (97, 97))  # every latent 8 x 8


@pytest.fixture(scope="module")
def seg_store_path(tmp_path_factory, tiny_codec):
    root = tmp_path_factory.mktemp("segload")
    encode_seg_store(root / "data", root / "store", tiny_codec, split_of=lambda i: "train")
    return root / "store"


def _spec(path, fmt: str, **kw) -> StreamSpec:
    kw = {"shuffle": True, "batch_size": 2, "batches_per_rank": 9, **kw}
    return StreamSpec(store=str(path), split="train", fmt=fmt, fields=FIELDS, **kw)


def _reference(path) -> dict[str, dict]:
    """Per key: the store's latents at their real size (read by zarr-python's path)."""
    from latentcache.store import open_store

    zs = open_store(path).zarr_split("train")
    got = zs.read(0, len(zs), dtype="stored")
    out = {}
    for i, key in enumerate(got["key"]):
        h, w = (int(v) for v in got["latent_shape"][i])
        out[str(key)] = {f: torch.from_numpy(got[f][i][:, :h, :w].copy()) for f in FIELDS}
    return out


def _check(batch: dict, ref: dict[str, dict]) -> None:
    """Every row: its latents top-left and zeros around them; its mask (the generator's) at
    its canvas offset and 255 around it; its image size and offset."""
    hb, wb = batch["y_hat"].shape[-2:]
    assert batch["mask"].shape == (len(batch["key"]), 16 * hb, 16 * wb)
    for i, key in enumerate(batch["key"]):
        h, w = SEG_SIZES[int(key[2:])]
        assert tuple(batch["image_size"][i].tolist()) == (h, w)
        top, left = (int(v) for v in batch["canvas_offset"][i])
        canvas = np.full((16 * hb, 16 * wb), 255, np.uint8)
        canvas[top : top + h, left : left + w] = position_mask(h, w)
        assert np.array_equal(batch["mask"][i].numpy(), canvas), key
        for f in FIELDS:
            lat = ref[key][f]
            padded = torch.zeros((lat.shape[0], hb, wb), dtype=lat.dtype)
            padded[:, : lat.shape[1], : lat.shape[2]] = lat
            assert torch.equal(batch[f][i], padded), (key, f)


@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_recycled_padded_batches_refill_only_their_padding(seg_store_path, fmt) -> None:
    ref = _reference(seg_store_path)
    stream = LatentStream(_spec(seg_store_path, fmt), producers=1)
    shapes, pointers = set(), []
    for epoch in range(2):
        stream.set_epoch(epoch)
        for b in stream:
            _check(b, ref)  # the buffer held other samples, of other sizes, just before
            shapes.add(tuple(b["y_hat"].shape[-2:]))
            pointers.append((epoch, b["y_hat"].data_ptr(), b["mask"].data_ptr(), b["lease"]))
            stream.release(b)
    assert len(shapes) > 1  # batches of different latent sizes shared the buffers
    assert {p[3] for p in pointers} == {0}  # always the one released buffer
    second = {p[1:3] for p in pointers if p[0] == 1}
    assert len(second) == 1  # grown to the largest batch in the first epoch, then reused


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_padded_batches_from_workers_recycled_or_not_are_the_same(seg_store_path, fmt) -> None:
    ref = _reference(seg_store_path)
    results = {}
    for recycle in (False, True):
        loader = build_loader(_spec(seg_store_path, fmt), workers=2, recycle=recycle)
        seen = []
        for epoch in range(2):
            loader.dataset.set_epoch(epoch)
            for b in loader:
                _check(b, ref)
                seen.append({k: v.clone() if torch.is_tensor(v) else v for k, v in b.items()})
        results[recycle] = seen
    assert len(results[True]) == 18
    for a, b in zip(results[False], results[True], strict=True):
        assert a["key"] == b["key"]
        for k in (*FIELDS, "mask", "image_size", "canvas_offset", "label"):
            assert torch.equal(a[k], b[k]), k


def test_cache_holds_and_counts_the_masks(tmp_path, tiny_codec) -> None:
    from latentcache.store import open_store
    from latentcache.train.cache import cache_loader, sample_bytes

    encode_seg_store(
        tmp_path / "data",
        tmp_path / "store",
        tiny_codec,
        sizes=ONE_SIZE,
        split_of=lambda i: "train",
    )
    store = open_store(tmp_path / "store")
    spec = _spec(tmp_path / "store", "zarr", shuffle=False, batches_per_rank=None)
    cached = cache_loader(spec, "host", torch.device("cpu"))
    streamed = list(build_loader(spec))
    got = list(cached)
    assert [b["key"] for b in got] == [b["key"] for b in streamed]
    for a, b in zip(got, streamed, strict=True):
        for k in (*FIELDS, "label", "mask", "image_size", "canvas_offset"):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    latents = int(store.num_channels) * 8 * 8 * (2 + 1)  # int16 y_hat, uint8 scale index
    masks = 128 * 128 + 2 * 2 * 4  # the canvas, uint8; image_size and canvas_offset, int32
    assert sample_bytes(store, "train", FIELDS) == 8 + latents + masks
    assert cached.cache.nbytes == len(ONE_SIZE) * (8 + latents + masks)


def test_masks_are_lz4hc_and_zstd_masks_of_earlier_stores_still_read(
    tmp_path, tiny_codec, seg_store_path, monkeypatch
) -> None:
    import json

    from zarr.codecs import BloscCodec, Crc32cCodec

    from latentcache.tasks.segmentation import IGNORE_INDEX, SegmentationTask

    def mask_codec(path) -> str:
        meta = json.loads((path / "zarr" / "train" / "mask" / "zarr.json").read_text())
        inner = meta["codecs"][0]["configuration"]["codecs"]  # sharding_indexed's
        return next(c["configuration"]["cname"] for c in inner if c["name"] == "blosc")

    assert mask_codec(seg_store_path) == "lz4hc"

    def zstd_masks(self, image_hw):  # what the writer chose before
        codecs = (BloscCodec(cname="zstd", clevel=5, shuffle="noshuffle"), Crc32cCodec())
        return {"mask": (tuple(int(v) for v in image_hw), "uint8", IGNORE_INDEX, codecs)}

    monkeypatch.setattr(SegmentationTask, "zarr_arrays", zstd_masks)
    encode_seg_store(tmp_path / "data", tmp_path / "old", tiny_codec, split_of=lambda i: "train")
    monkeypatch.undo()
    assert mask_codec(tmp_path / "old") == "zstd"
    ref = _reference(tmp_path / "old")
    for b in build_loader(_spec(tmp_path / "old", "zarr")):
        _check(b, ref)

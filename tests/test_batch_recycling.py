"""Recycled batch buffers: a buffer is reused only after its batch was released, so batches
read with recycling hold exactly what batches read without it hold, in both layouts, in
process and from spawned workers."""

from __future__ import annotations

import pytest
import torch

from latentcache.train.collate import POOL_SIZE
from latentcache.train.data import LatentStream, StreamSpec, build_loader

FORMATS = ("zarr", "webdataset")
FIELDS = ("y_hat", "scales_hat")


def _spec(store, fmt: str, **kw) -> StreamSpec:
    return StreamSpec(
        store=str(store.path), split="train", fmt=fmt, fields=FIELDS, shuffle=True,
        batch_size=4, batches_per_rank=12, **kw,
    )  # fmt: skip


def _copy(batch: dict) -> dict:
    """What the consumer saw when it took the batch: keys and copies of the latents."""
    return {"key": list(batch["key"]), **{f: batch[f].clone() for f in FIELDS}}


def _by_key(batches: list[dict]) -> dict[str, dict]:
    out = {}
    for b in batches:
        for i, k in enumerate(b["key"]):
            out.setdefault(k, []).append({f: b[f][i] for f in FIELDS})
    return out


def _same(a: list[dict], b: list[dict]) -> None:
    ka, kb = _by_key(a), _by_key(b)
    assert sorted(ka) == sorted(kb)
    for k in ka:
        assert len(ka[k]) == len(kb[k])
        for x, y in zip(ka[k], kb[k], strict=True):
            for f in FIELDS:
                assert torch.equal(x[f], y[f]), (k, f)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("workers", [0, 2])
def test_recycled_batches_hold_what_fresh_ones_hold(texture_store, fmt, workers) -> None:
    results = {}
    for recycle in (False, True):
        loader = build_loader(_spec(texture_store, fmt), workers=workers, recycle=recycle)
        seen = []
        for epoch in range(2):  # persistent workers keep their pool across epochs
            loader.dataset.set_epoch(epoch)
            seen += [_copy(b) for b in loader]
        results[recycle] = seen
    assert len(results[True]) == 24
    _same(results[False], results[True])


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_batch_never_released_is_never_overwritten(texture_store, fmt) -> None:
    stream = LatentStream(_spec(texture_store, fmt), producers=1)
    held = list(stream)  # nothing released: the pool runs dry and allocates fresh buffers
    copies = [_copy(b) for b in held]
    assert [b["lease"] for b in held[:POOL_SIZE]] == list(range(POOL_SIZE))
    assert {b["lease"] for b in held[POOL_SIZE:]} == {-1}
    pointers = [b["y_hat"].data_ptr() for b in held]
    assert len(set(pointers)) == len(held)
    for b, c in zip(held, copies, strict=True):
        assert b["key"] == c["key"]
        for f in FIELDS:
            assert torch.equal(b[f], c[f])


@pytest.mark.parametrize("fmt", FORMATS)
def test_released_buffers_are_reused(texture_store, fmt) -> None:
    stream = LatentStream(_spec(texture_store, fmt), producers=1)
    reference = [_copy(b) for b in LatentStream(_spec(texture_store, fmt))]
    seen, pointers = [], set()
    for b in stream:
        seen.append(_copy(b))
        pointers.add(b["y_hat"].data_ptr())
        stream.release(b)
    assert len(pointers) == 1  # one buffer, handed back every time
    _same(reference, seen)

"""Loaders over real stores (scikit-image textures through a tiny real codec): every sample
once in evaluation, the same number of full batches on every rank in training, seeded
per-epoch shuffles, and the same samples from Zarr and WebDataset."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from latentcache.errors import ConfigError
from latentcache.train.data import (
    LatentCollate,
    StreamSpec,
    batches_per_rank,
    build_loader,
    mix_pieces,
    slot_fraction,
    split_count,
    split_ranges,
)

FORMATS = ("zarr", "webdataset")


def _keys(store, fmt: str, **kw) -> list[list[str]]:
    """Keys per batch of one rank's epoch."""
    epoch = kw.pop("epoch", 0)
    spec = StreamSpec(
        store=str(store.path), split="train", fmt=fmt, fields=("y_hat", "scales_hat"), **kw
    )
    loader = build_loader(spec)
    loader.dataset.set_epoch(epoch)
    return [batch["key"] for batch in loader]


def _all_keys(store, split: str = "train") -> set[str]:
    zs = store.zarr_split(split)
    return {str(k) for a, b in zs.blocks() for k in zs.read(a, b)["key"]}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("world", [1, 2, 5])
def test_evaluation_streams_every_sample_exactly_once_over_ranks(texture_store, fmt, world) -> None:
    seen = Counter()
    for rank in range(world):
        for keys in _keys(texture_store, fmt, rank=rank, world_size=world, batch_size=3):
            seen.update(keys)
    assert set(seen) == _all_keys(texture_store)
    assert set(seen.values()) == {1}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_training_gives_every_rank_the_same_number_of_full_batches(
    texture_store, fmt, world
) -> None:
    count = split_count(texture_store.split_info("train"))
    steps = batches_per_rank(count, world, 4)
    per_rank = [
        _keys(
            texture_store,
            fmt,
            rank=r,
            world_size=world,
            batch_size=4,
            batches_per_rank=steps,
            shuffle=True,
        )
        for r in range(world)
    ]
    assert {len(b) for b in per_rank} == {steps}
    assert all(len(keys) == 4 for batches in per_rank for keys in batches)
    seen = {k for batches in per_rank for keys in batches for k in keys}
    if world <= 2:  # enough rows for everyone: the epoch covers the split
        assert seen == _all_keys(texture_store)


@pytest.mark.parametrize("fmt", FORMATS)
def test_shuffle_is_seeded_per_epoch(texture_store, fmt) -> None:
    kw = dict(batch_size=4, batches_per_rank=3, shuffle=True, seed=3)
    a0, a0_again = (
        _keys(texture_store, fmt, epoch=0, **kw),
        _keys(texture_store, fmt, epoch=0, **kw),
    )
    a1 = _keys(texture_store, fmt, epoch=1, **kw)
    assert a0 == a0_again
    assert a0 != a1
    assert sorted(sum(a0, [])) == sorted(sum(a1, []))


def test_zarr_and_webdataset_hold_the_same_samples(texture_store) -> None:
    batches = {}
    for fmt in FORMATS:
        spec = StreamSpec(store=str(texture_store.path), split="test", fmt=fmt, batch_size=100)
        (batches[fmt],) = list(build_loader(spec))
    order = {fmt: np.argsort(b["key"]) for fmt, b in batches.items()}
    for field in ("y_hat", "scales_hat", "label"):
        z, w = (batches[f][field].numpy()[order[f]] for f in FORMATS)
        np.testing.assert_array_equal(z, w)
    assert batches["zarr"]["y_hat"].dtype.itemsize == 2  # int16 travels as stored


def test_spawned_workers_deliver_the_same_epoch(texture_store) -> None:
    base = dict(
        store=str(texture_store.path), split="train", batch_size=4, batches_per_rank=3, shuffle=True
    )
    serial = sorted(k for b in build_loader(StreamSpec(**base), workers=0) for k in b["key"])
    spawned = sorted(k for b in build_loader(StreamSpec(**base), workers=2) for k in b["key"])
    assert serial == spawned


@pytest.mark.parametrize("fmt", FORMATS)
def test_evaluation_with_two_worker_processes_sees_every_sample_once(texture_store, fmt) -> None:
    spec = StreamSpec(store=str(texture_store.path), split="train", fmt=fmt, batch_size=4)
    keys = [k for b in build_loader(spec, workers=2) for k in b["key"]]
    assert sorted(keys) == sorted(_all_keys(texture_store))


def test_split_ranges_partitions_rows_contiguously() -> None:
    ranges = [(0, 5), (10, 12), (20, 27)]
    parts = [split_ranges(ranges, i / 3, (i + 1) / 3) for i in range(3)]
    rows = [r for part in parts for a, b in part for r in range(a, b)]
    assert rows == [*range(0, 5), 10, 11, *range(20, 27)]
    assert [sum(b - a for a, b in p) for p in parts] == [5, 4, 5]


def test_slot_fractions_follow_worker_quotas() -> None:
    assert slot_fraction(1, 2, 0, [1]) == (0.5, 1.0)
    assert slot_fraction(0, 1, 1, [1, 1]) == (0.5, 1.0)  # evaluation: equal shares
    assert slot_fraction(0, 1, 1, [0, 0]) == (0.5, 1.0)
    assert slot_fraction(0, 1, 0, [8, 4]) == (0.0, 2 / 3)
    assert slot_fraction(1, 2, 1, [8, 4]) == (0.5 + 1 / 3, 1.0)


def test_mix_pieces_is_a_seeded_permutation_that_alternates_pieces() -> None:
    pieces = [list(range(i, i + 5)) for i in range(0, 50, 5)]
    out = list(mix_pieces(pieces, 4, np.random.default_rng(0)))
    assert sorted(out) == list(range(50)) and out != list(range(50))
    assert out == list(mix_pieces(pieces, 4, np.random.default_rng(0)))
    first_round = out[:4]  # one sample of each of the window's 4 pieces
    assert sorted(x // 5 for x in first_round) == [0, 1, 2, 3]


def test_collate_resizes_mixed_latent_sizes_or_says_why_not() -> None:
    def sample(h, w):
        y = np.zeros((2, 6, 6), np.int16)
        return {
            "y_hat": y,
            "scales_hat": np.ones((2, 6, 6), np.float32),
            "label": 1,
            "key": f"k{h}",
            "latent_shape": np.array([h, w]),
        }

    batch = LatentCollate(("y_hat", "scales_hat"), resize=4)([sample(6, 6), sample(3, 5)])
    assert batch["y_hat"].shape == batch["scales_hat"].shape == (2, 2, 4, 4)
    np.testing.assert_allclose(batch["scales_hat"].numpy(), 1.0, rtol=1e-5)
    same = LatentCollate(("y_hat",), resize=None)([sample(3, 5), sample(3, 5)])
    assert same["y_hat"].shape == (2, 2, 3, 5)
    with pytest.raises(ConfigError, match="mixes latent sizes"):
        LatentCollate(("y_hat",), resize=None)([sample(6, 6), sample(3, 5)])


def test_bad_specs_name_the_value(texture_store) -> None:
    with pytest.raises(ConfigError, match="format='hdf5'"):
        StreamSpec(store=str(texture_store.path), split="train", fmt="hdf5")
    with pytest.raises(ConfigError, match="rank=2 outside 0..1"):
        StreamSpec(store=str(texture_store.path), split="train", rank=2, world_size=2)


# ------------------------------------------------------------------ class mixing


def _write_sorted_classes(root, per_class: int = 16, size: int = 64):
    """Six classes (three CC0 textures, three CC0 photos), ``per_class`` crops each."""
    from PIL import Image
    from skimage import data

    sources = {
        "brick": data.brick(), "grass": data.grass(), "gravel": data.gravel(),
        "astronaut": data.astronaut()[..., 0], "coffee": data.coffee()[..., 1], "chelsea": data.chelsea()[..., 2],
    }  # fmt: skip
    for cls, img in sources.items():
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            y, x = (i * 37) % (img.shape[0] - size), (i * 53) % (img.shape[1] - size)
            crop = np.stack([img[y : y + size, x : x + size]] * 3, axis=-1)
            Image.fromarray(crop).save(root / cls / f"{cls}_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def sorted_store(tmp_path_factory, tiny_codec):
    """96 rows in 24 shards of 4, written in class order (``order="index"``: the index order
    of class folders, as stores written before the seeded row order are)."""
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode
    from latentcache.store import open_store

    root = _write_sorted_classes(tmp_path_factory.mktemp("six"))
    out = tmp_path_factory.mktemp("stores") / "sorted"
    run_encode(
        EncodeConfig(
            dataset="imagefolder", data_root=str(root), out=str(out), shard_size=4, workers=0,
            order="index",
        ),
        tiny_codec,
    )  # fmt: skip
    store = open_store(out)
    zs = store.zarr_split("train")
    labels = np.concatenate([zs.read(a, b)["label"] for a, b in zs.blocks()])
    assert (np.diff(labels) >= 0).all(), "the mixing tests need a class-sorted store"
    return store


def expected_distinct(counts: list[int], batch: int) -> float:
    """Exact mean number of classes in a uniformly random batch (drawn without replacement)."""
    n = sum(counts)
    return sum(1 - math.comb(n - c, batch) / math.comb(n, batch) for c in counts)


def _mean_classes(store, fmt: str, workers: int, batch_size: int, epochs: int = 3) -> float:
    spec = StreamSpec(
        store=str(store.path), split="train", fmt=fmt, batch_size=batch_size, shuffle=True,
        batches_per_rank=batches_per_rank(96, 1, batch_size),
    )  # fmt: skip
    loader = build_loader(spec, workers=workers)
    per_batch = []
    for epoch in range(epochs):
        loader.dataset.set_epoch(epoch)
        per_batch += [
            len(set(b["label"].tolist())) for b in loader if len(b["label"]) == batch_size
        ]
    return float(np.mean(per_batch))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("workers", [0, 2])
def test_batches_from_a_class_sorted_store_mix_classes(sorted_store, fmt, workers) -> None:
    batch = 8
    uniform = expected_distinct([16] * 6, batch)  # 4.64 of 6 classes
    got = _mean_classes(sorted_store, fmt, workers, batch)
    assert got >= 0.9 * uniform, f"{got:.2f} classes per batch, uniform {uniform:.2f}"


def test_mixing_at_minc_scale_reaches_uniform_class_counts() -> None:
    """MINC-2500's train split in class order (23 classes x 2,125 rows) through the Zarr
    plan: pieces of piece_size rows, shuffled, mixed MIX_PIECES at a time, batches of 64."""
    from latentcache.train.data import MIX_PIECES, piece_size

    labels = np.repeat(np.arange(23), 2125)
    p = piece_size(256, 64)
    rng = np.random.default_rng(0)
    starts = rng.permutation(np.arange(0, len(labels), p))
    pieces = [labels[s : s + p].tolist() for s in starts]
    stream = list(mix_pieces(pieces, MIX_PIECES, rng))
    counts = [len(set(stream[i : i + 64])) for i in range(0, len(stream) - 63, 64)]
    uniform = expected_distinct([2125] * 23, 64)
    assert np.mean(counts) >= 0.9 * uniform, (np.mean(counts), uniform)


# ------------------------------------------------ worker processes, ranks, both layouts


@pytest.mark.parametrize("fmt", FORMATS)
def test_eval_with_more_workers_than_shards_sees_every_sample_once_over_ranks(
    texture_store, fmt
) -> None:
    seen = Counter()
    for rank in range(2):
        spec = StreamSpec(
            store=str(texture_store.path), split="train", fmt=fmt, batch_size=3,
            rank=rank, world_size=2,
        )  # fmt: skip
        for batch in build_loader(spec, workers=2):  # 3 train shards, 4 slots
            seen.update(batch["key"])
    assert set(seen) == _all_keys(texture_store) and set(seen.values()) == {1}


@pytest.mark.parametrize("fmt", FORMATS)
def test_train_with_workers_gives_ranks_disjoint_samples_and_equal_steps(sorted_store, fmt) -> None:
    world, batch = 2, 8
    steps = batches_per_rank(96, world, batch)
    keys = []
    for rank in range(world):
        spec = StreamSpec(
            store=str(sorted_store.path), split="train", fmt=fmt, batch_size=batch, shuffle=True,
            rank=rank, world_size=world, batches_per_rank=steps, seed=5,
        )  # fmt: skip
        loader = build_loader(spec, workers=2)
        loader.dataset.set_epoch(1)
        batches = [b["key"] for b in loader]
        assert len(batches) == steps and {len(b) for b in batches} == {batch}
        keys.append({k for b in batches for k in b})
    assert not keys[0] & keys[1]
    assert keys[0] | keys[1] == _all_keys(sorted_store)  # 48 rows each, 6 batches of 8


def test_persistent_workers_follow_set_epoch(texture_store) -> None:
    spec = StreamSpec(
        store=str(texture_store.path), split="train", batch_size=4, batches_per_rank=3,
        shuffle=True, seed=1,
    )  # fmt: skip
    loader = build_loader(spec, workers=2)
    orders = []
    for epoch in (0, 1, 0):
        loader.dataset.set_epoch(epoch)
        orders.append([k for b in loader for k in b["key"]])
    serial = build_loader(spec, workers=0)
    serial.dataset.set_epoch(0)
    assert orders[0] == orders[2] != orders[1]
    assert sorted(orders[0]) == sorted(k for b in serial for k in b["key"])


def test_index_batches_normalize_like_float_scales(texture_store) -> None:
    from latentcache.train.augment import LatentStats, normalize_inputs

    spec = StreamSpec(store=str(texture_store.path), split="test", batch_size=100)
    (batch,) = list(build_loader(spec))
    assert batch["scales_hat"].dtype == torch.uint8  # the scale index travels as stored
    table = torch.tensor(texture_store.manifest["scale_table"], dtype=torch.float32)
    as_float = {**batch, "scales_hat": table[batch["scales_hat"].long()]}
    stats = LatentStats(0.0, 1.0, -1.0, 2.0)
    (a,), (b,) = (normalize_inputs(x, ["scales_hat"], stats) for x in (batch, as_float))
    torch.testing.assert_close(a, b)

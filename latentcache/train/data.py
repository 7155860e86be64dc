"""Stream a store's latents into batches, from Zarr or WebDataset, never running the codec.

::

    store split ─► pieces: a few rows of one Zarr shard | the next samples of one tar
      └► per epoch: the same seeded shuffle of pieces (Zarr) or tars (WebDataset) on every rank
      └► split over slots = ranks x DataLoader workers, disjoint:
           Zarr: a contiguous share of the shuffled pieces, sized to each worker's quota;
           WebDataset: whole tars (or every n-th sample when tars are fewer than slots)
      └► train: mix — a window of MIX_PIECES pieces (Zarr: random places of the split;
           WebDataset: the next samples of MIX_PIECES tars read side by side) is shuffled
           so that consecutive samples come from different pieces: class-sorted stores
           still give batches of many classes, and every read stays sequential
         each worker yields a fixed quota of whole batches (cycling its share when short),
           so every rank runs the same number of steps and DDP never waits forever
      └► batches built in the worker: each latent decoded into its slot of the batch tensor
           (collate.BatchAssembler) ─► {"y_hat", "scales_hat", "label", "key"}
      └► recycle=True (the trainer's loaders): each worker reuses its few batch buffers,
           each only after the main process released the batch (LatentLoader: when the
           next batch is requested), instead of fresh shared memory per batch

Workers start with ``spawn`` (zarr v3 deadlocks under fork) and persist across epochs
(``set_epoch`` reaches them through shared memory). Batches hold the stored dtypes
(``y_hat`` int16, the scale index uint8); normalization and augmentation happen on the
training device (:mod:`latentcache.train.augment`).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from latentcache.errors import ConfigError, StoreCorruptError
from latentcache.store.location import require_worker_access
from latentcache.train.collate import (
    POOL_SIZE,
    BatchAssembler,
    BufferPool,
    LatentCollate,
    default_scale_table,
    release,
)
from latentcache.train.sources import WdsSource, ZarrSource

__all__ = [
    "FORMATS",
    "StreamSpec",
    "LatentStream",
    "LatentLoader",
    "LatentCollate",
    "build_loader",
    "split_ranges",
    "slot_fraction",
    "mix_pieces",
    "piece_size",
    "worker_quotas",
    "batches_per_rank",
    "split_count",
]

logger = logging.getLogger(__name__)

FORMATS = ("zarr", "webdataset")
READ_ROWS = 64  # Zarr rows per read in evaluation (order kept)
MIX_PIECES = 64  # pieces mixed per window: a batch of 64 draws from 64 places


@dataclass(frozen=True)
class StreamSpec:
    """What one rank streams. ``batches_per_rank`` set: train mode (fixed, equal quota).
    ``buffer_size``: samples held (still compressed) for mixing in train mode."""

    store: str
    split: str
    fmt: str = "zarr"
    fields: tuple[str, ...] = ("y_hat", "scales_hat")
    shuffle: bool = False
    seed: int = 0
    buffer_size: int = 256
    rank: int = 0
    world_size: int = 1
    batch_size: int = 32
    batches_per_rank: int | None = None
    codec_checkpoint: str | None = None  # z_hat stores: the codec's weights, if not zoo/demo

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ConfigError(f"format={self.fmt!r}; valid: {list(FORMATS)}")
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank={self.rank} outside 0..{self.world_size - 1}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: should be >= 1")
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size={self.buffer_size}: should be >= 1")


def split_ranges(ranges: list[tuple[int, int]], lo: float, hi: float) -> list[tuple[int, int]]:
    """The rows between fractions ``lo`` and ``hi`` of the concatenated ``ranges``."""
    total = sum(b - a for a, b in ranges)
    first, last = round(total * lo), round(total * hi)
    out, pos = [], 0
    for a, b in ranges:
        s, e = max(first, pos), min(last, pos + b - a)
        if s < e:
            out.append((a + s - pos, a + e - pos))
        pos += b - a
    return out


def slot_fraction(
    rank: int, world_size: int, worker: int, weights: list[int]
) -> tuple[float, float]:
    """This (rank, worker)'s share of the rows: 1/world per rank, split among the rank's
    ``len(weights)`` workers in proportion to ``weights`` (their quotas; equal if all 0)."""
    if not 0 <= worker < len(weights):
        raise ConfigError(f"worker={worker} outside 0..{len(weights) - 1}")
    weights = weights if sum(weights) else [1] * len(weights)
    cum = np.cumsum([0, *weights]) / sum(weights)
    return (rank + cum[worker]) / world_size, (rank + cum[worker + 1]) / world_size


def worker_quotas(batches: int, workers: int) -> list[int]:
    """Whole batches per DataLoader worker, summing to ``batches``."""
    return [batches // workers + (w < batches % workers) for w in range(workers)]


def piece_size(buffer_size: int, batch_size: int) -> int:
    """Rows per piece: the buffer holds MIX_PIECES pieces (at least a batch's worth)."""
    return max(1, buffer_size // max(MIX_PIECES, batch_size))


def mix_pieces(pieces: Iterable[list], width: int, rng: np.random.Generator) -> Iterator:
    """Windows of ``width`` pieces, each emitted in rounds: one sample of every piece per
    round, pieces and their samples in random order. A batch then spans ``width`` pieces."""
    window: list[list] = []
    for piece in pieces:
        if piece:
            window.append(list(piece))
        if len(window) == width:
            yield from _rounds(window, rng)
            window = []
    yield from _rounds(window, rng)


def _rounds(window: list[list], rng: np.random.Generator) -> Iterator:
    for piece in window:
        rng.shuffle(piece)
    for r in range(max((len(p) for p in window), default=0)):
        for i in rng.permutation(len(window)):
            if r < len(window[i]):
                yield window[i][r]


def _cycle(make: Callable[[], Iterator], count: int) -> Iterator:
    """``count`` items from ``make()``, starting it over when it runs out."""
    produced = 0
    while produced < count:
        before = produced
        for item in make():
            yield item
            produced += 1
            if produced == count:
                return
        if produced == before:
            raise StoreCorruptError("a loader slot has units but they hold no readable samples")


def _batched(samples: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for s in samples:
        batch.append(s)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class LatentStream(IterableDataset):
    """Batches of one split for this rank and DataLoader worker (see module docstring).

    ``producers``: > 0 to recycle batch buffers (one :class:`BufferPool` per producer, the
    DataLoader's workers or the main process); the consumer hands each batch back with
    :meth:`release` (:class:`LatentLoader` does so when the next batch is requested).
    """

    def __init__(self, spec: StreamSpec, resize: int | None = None, producers: int = 0) -> None:
        super().__init__()
        self.spec, self.resize = spec, resize
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._leases = (
            torch.zeros((producers, POOL_SIZE), dtype=torch.int32).share_memory_()
            if producers
            else None
        )
        self._store = self._source = self._pool = None

    def __getstate__(self) -> dict:  # reopened in each worker
        return {**self.__dict__, "_store": None, "_source": None, "_pool": None}

    def release(self, batch: dict) -> None:
        """The consumer is done with ``batch``: its buffers may be overwritten from now on."""
        if self._leases is not None:
            release(self._leases, int(batch.get("lease", -1)))

    def _buffer_pool(self, producer: int) -> BufferPool | None:
        if self._leases is None:
            return None
        if self._pool is None:  # kept across epochs (persistent workers)
            self._pool = BufferPool(self._leases, producer, self.spec.batch_size)
        return self._pool

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Seed the next pass; reaches persistent workers through shared memory."""
        self._epoch.fill_(epoch)

    @property
    def store(self):
        if self._store is None:
            from latentcache.store import open_store

            store = open_store(self.spec.store)
            if store.scales_repr == "z_hat" and "scales_hat" in self.spec.fields:
                from latentcache.codec.load import load_store_codec

                # scales_hat = h_s(z_hat): the store's own codec, checked by its sha256
                store = open_store(
                    self.spec.store, load_store_codec(store.codec, self.spec.codec_checkpoint)
                )
            self._store = store
        return self._store

    @property
    def source(self) -> ZarrSource | WdsSource:
        if self._source is None:
            kind = ZarrSource if self.spec.fmt == "zarr" else WdsSource
            self._source = kind(self.store, self.spec.split, self.spec.fields)
        return self._source

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if info is not None:
            _one_thread_per_worker()
        spec, epoch = self.spec, self.epoch
        train = spec.batches_per_rank is not None
        quotas = worker_quotas(spec.batches_per_rank, workers) if train else [1] * workers
        order = np.random.default_rng([spec.seed, epoch]) if spec.shuffle else None
        rng = np.random.default_rng([spec.seed, epoch, spec.rank, worker, 1])
        if spec.fmt == "zarr":
            share = slot_fraction(spec.rank, spec.world_size, worker, quotas)
            pieces = self._zarr_pieces(order, share)
        else:
            slot, slots = spec.rank * workers + worker, spec.world_size * workers
            pieces = self._wds_pieces(order, slot, slots, rng)
        if spec.shuffle:

            def samples() -> Iterator:
                return mix_pieces(pieces(), MIX_PIECES, rng)
        else:

            def samples() -> Iterator:
                return (s for piece in pieces() for s in piece)

        stream: Iterable = samples()
        if train:
            count = quotas[worker] * spec.batch_size
            stream = _cycle(samples, count) if count else iter(())
        pool = self._buffer_pool(worker)
        task = self.store.task_unit
        assemble = BatchAssembler(spec.fields, self.resize, self._scale_table(), pool, task)
        for batch in _batched(stream, spec.batch_size):
            yield assemble(batch)

    def _scale_table(self) -> np.ndarray | None:
        """None when a uint8 index can travel as is (the store uses CompressAI's table)."""
        table = np.asarray(self.store.manifest["scale_table"], dtype=np.float32)
        return None if np.array_equal(table, default_scale_table()) else table

    def _piece_rows(self) -> int:
        spec = self.spec
        return piece_size(spec.buffer_size, spec.batch_size) if spec.shuffle else READ_ROWS

    def _zarr_pieces(self, order, share) -> Callable[[], Iterator[list]]:
        source, p = self.source, self._piece_rows()
        pieces = [(a, min(a + p, b)) for a0, b in source.blocks() for a in range(a0, b, p)]
        if order is not None:
            pieces = [pieces[i] for i in order.permutation(len(pieces))]
        mine = split_ranges(pieces, *share)  # pieces never cross a block; cut ones stay inside
        return lambda: (source.piece(a, b) for a, b in mine)

    def _wds_pieces(self, order, slot: int, slots: int, rng) -> Callable[[], Iterator[list]]:
        source, p = self.source, self._piece_rows()
        urls = source.units()
        if order is not None:
            urls = [urls[i] for i in order.permutation(len(urls))]
        if len(urls) >= slots:
            mine, stride = list(enumerate(urls[slot::slots])), 1
        else:  # fewer tars than slots: everyone reads all, keeps every slots-th sample
            mine, stride = list(enumerate(urls)), slots
        size = source.max_tar_samples()

        def samples(t: int, url: str) -> Iterator:  # sample i of tar t: number t * size + i
            for i, s in enumerate(source.samples(url)):
                if stride == 1 or (t * size + i) % stride == slot:
                    yield s

        side_by_side = MIX_PIECES if self.spec.shuffle else 1
        units = [lambda t=t, u=u: samples(t, u) for t, u in mine]
        return lambda: _interleave(units, side_by_side, p, rng)


def _one_thread_per_worker() -> None:
    """Blosc decompresses with a thread pool of up to 8 threads when called from a main
    thread, which a DataLoader worker's is: with many workers that oversubscribes the cores
    (torch sets its own threads to 1 in workers for the same reason)."""
    from numcodecs import blosc

    blosc.use_threads = False


def _interleave(
    units: list[Callable[[], Iterator]], width: int, piece: int, rng: np.random.Generator
) -> Iterator[list]:
    """Pieces of ``piece`` samples, each from one of up to ``width`` units read side by side
    (a random one each time); a finished unit makes room for the next in ``units``."""
    todo, open_ = list(units), []
    while todo or open_:
        while todo and len(open_) < width:
            open_.append(todo.pop(0)())
        i = int(rng.integers(len(open_))) if len(open_) > 1 else 0
        chunk = list(itertools.islice(open_[i], piece))
        if len(chunk) < piece:
            open_.pop(i)
        if chunk:
            yield chunk


class LatentLoader(DataLoader):
    """A DataLoader over a :class:`LatentStream`. When the stream recycles buffers, each
    batch is released when the next one is requested: a consumer must be done with a batch
    (its tensors copied to the device, or its step finished) before asking for the next."""

    def __iter__(self):
        it = super().__iter__()
        return it if self.dataset._leases is None else self._recycling(it)

    def _recycling(self, it) -> Iterator[dict]:
        for batch in it:
            yield batch
            self.dataset.release(batch)


def build_loader(
    spec: StreamSpec,
    workers: int = 0,
    resize: int | None = None,
    pin_memory: bool = False,
    recycle: bool = False,
) -> LatentLoader:
    """A DataLoader over :class:`LatentStream`; call ``loader.dataset.set_epoch(e)`` each epoch.

    ``recycle``: reuse batch buffers (see :class:`LatentLoader`) instead of allocating fresh
    shared memory per batch, for loops that finish with a batch before taking the next.
    """
    if workers < 0:
        raise ConfigError(f"workers={workers}: should be >= 0")
    require_worker_access(spec.store, workers)
    return LatentLoader(
        LatentStream(spec, resize, producers=max(workers, 1) if recycle else 0),
        batch_size=None,  # the stream yields whole batches
        num_workers=workers,
        pin_memory=pin_memory,
        multiprocessing_context="spawn" if workers > 0 else None,
        persistent_workers=workers > 0,
    )


def split_count(info: dict) -> int:
    """Samples stored in a split, from ``store.split_info(split)``."""
    for key in ("count", "stored"):
        if key in info:
            return int(info[key])
    raise StoreCorruptError(f"split info has no sample count: {sorted(info)}")


def batches_per_rank(count: int, world_size: int, batch_size: int) -> int:
    """Training steps per rank and epoch: every sample at least once, padded by cycling."""
    return max(1, math.ceil(math.ceil(count / world_size) / batch_size))

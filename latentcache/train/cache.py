"""A split held whole in memory (``--cache host | device``): epochs after the first read no disk.

::

    manifest ─► estimate: this rank's samples x bytes per sample (stored dtypes) ─► refuse
      in one line when over the free memory (host: MemAvailable; CUDA: cudaMemGetInfo)
    ─► the streaming loader in evaluation mode (this rank's disjoint share, any workers)
      ─► batches staged on the host ─► one tensor per field, on the host or the device,
         filled batch by batch (each staged batch dropped once copied: one copy in memory)
    ─► CachedBatches, per epoch: a permutation of the rank's rows seeded by
       (seed, epoch, rank), cut into the same number of whole batches on every rank
       (cycling a share that is short), gathered by index where the tensors live

Batches hold what the streaming loader's batches hold (every tensor field in the stored
dtype, ``label``, ``key``, the task's target tensors), so the same device-side augmentation follows. Under DDP each
rank caches only its own share of the split and shuffles within it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import torch

from latentcache.errors import ConfigError, StoreCorruptError
from latentcache.train.collate import default_scale_table
from latentcache.train.data import StreamSpec, build_loader, split_count

__all__ = [
    "CACHES",
    "MemoryCache",
    "CachedBatches",
    "sample_bytes",
    "free_bytes",
    "check_fits",
    "load_cache",
    "cache_loader",
]

logger = logging.getLogger(__name__)

CACHES = ("off", "host", "device")
HEADROOM = 0.8  # of the free memory a cache may take (the step needs the rest)
LOAD_BATCH = 256  # rows per batch while filling the cache
_SCALE_BYTES = {"float16": 2, "float32": 4, "z_hat": 4}  # z_hat: h_s gives float32


def sample_bytes(store, split: str, fields: tuple[str, ...]) -> int:
    """Bytes one sample of ``split`` takes in memory: its fields in the dtypes the loader
    yields (y_hat int16; the scale index uint8 with CompressAI's table, else float32), its
    label and its task's target tensors (``Task.target_layout``: a segmentation mask on
    the codec canvas, image_size, canvas_offset). Refuses a split of mixed latent sizes
    (those are resized or padded per batch) and a task with ragged targets (boxes)."""
    task = store.task_unit
    if task.ragged_targets:
        raise ConfigError(
            f"--cache: {task.name} targets ({', '.join(task.ragged_targets)}) vary in length "
            f"per sample and are not cached; use --cache off"
        )
    info = store.split_info(split)
    hw = info.get("latent_shape")
    if not hw:
        raise ConfigError(
            f"--cache: split {split!r} mixes latent sizes; only a one-size split can be cached"
        )
    per = int(store.num_channels) * int(hw[0]) * int(hw[1])
    total = 8  # int64 label
    for shape, dtype in task.target_layout((int(hw[0]), int(hw[1]))).values():
        total += math.prod(shape) * np.dtype(dtype).itemsize
    for f in fields:
        if f == "y_hat":
            total += 2 * per
        elif f == "scales_hat":
            total += per * _scales_bytes(store)
        elif f == "means_hat":  # float32
            total += 4 * per
        else:
            raise ConfigError(f"--cache: unknown input field {f!r}")
    return total


def _scales_bytes(store) -> int:
    repr_ = store.scales_repr
    if repr_ != "index":
        return _SCALE_BYTES[repr_]
    table = np.asarray(store.manifest["scale_table"], dtype=np.float32)
    return 1 if np.array_equal(table, default_scale_table()) else 4


def free_bytes(device: torch.device) -> int:
    """Free memory where a cache on ``device`` would live (host RAM for the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(need: int, free: int, where: str, what: str) -> None:
    """Refuse, in one line, a cache over ``HEADROOM`` of the free memory."""
    if need > HEADROOM * free:
        raise ConfigError(
            f"--cache {where}: {what} need about {need / 2**30:.2f} GiB but {where} memory "
            f"has {free / 2**30:.2f} GiB free ({HEADROOM:.0%} usable); use --cache "
            f"{'host' if where == 'device' else 'off'} or fewer samples"
        )


class MemoryCache:
    """One rank's share of a split: ``tensors`` field -> (N, ...) on one device, ``keys``."""

    def __init__(self, tensors: dict[str, torch.Tensor], keys: list[str]) -> None:
        sizes = {len(t) for t in tensors.values()}
        if sizes != {len(keys)}:
            raise StoreCorruptError(f"cache fields hold {sizes} rows for {len(keys)} keys")
        self.tensors, self.keys = tensors, keys

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def batch(self, rows: np.ndarray) -> dict:
        """The batch of ``rows`` (indices into this cache), where the tensors live."""
        device = next(iter(self.tensors.values())).device
        index = torch.from_numpy(rows).to(device, non_blocking=True)  # no stream sync
        out = {name: t.index_select(0, index) for name, t in self.tensors.items()}
        out["key"] = [self.keys[i] for i in rows.tolist()]
        return out


def _stage(spec: StreamSpec, workers: int) -> tuple[list[dict], int]:
    """This rank's batches, read once in order by the streaming loader (fresh tensors)."""
    staged, rows = [], 0
    for batch in build_loader(spec, workers=workers, recycle=False):
        staged.append(batch)
        rows += len(batch["label"])
    return staged, rows


def _layout(staged: list[dict], split: str) -> dict[str, tuple]:
    first = staged[0]
    layout = {k: (tuple(v.shape[1:]), v.dtype) for k, v in first.items() if _is_row_tensor(v)}
    for b in staged[1:]:
        got = {k: (tuple(v.shape[1:]), v.dtype) for k, v in b.items() if _is_row_tensor(v)}
        if got != layout:
            raise ConfigError(
                f"--cache: split {split!r} yields batches of different shapes ({layout} vs "
                f"{got}); only a one-size split can be cached"
            )
    return layout


def _is_row_tensor(v) -> bool:
    return isinstance(v, torch.Tensor) and v.ndim >= 1


def load_cache(spec: StreamSpec, device: torch.device, workers: int = 0) -> MemoryCache:
    """Read this rank's share of ``spec.split`` (eval mode: every sample once) into memory
    on ``device``. The caller checks that it fits first (:func:`check_fits`)."""
    spec = replace(spec, shuffle=False, batches_per_rank=None, batch_size=LOAD_BATCH)
    staged, rows = _stage(spec, workers)
    if not staged:
        raise StoreCorruptError(f"--cache: split {spec.split!r} gave this rank no samples")
    layout = _layout(staged, spec.split)
    tensors = {
        k: torch.empty((rows, *shape), dtype=dtype, device=device)
        for k, (shape, dtype) in layout.items()
    }
    keys: list[str] = []
    at = 0
    while staged:
        batch = staged.pop(0)  # dropped once copied: the staging shrinks as the cache grows
        n = len(batch["label"])
        for k, t in tensors.items():
            t[at : at + n].copy_(batch[k])
        keys += [str(key) for key in batch["key"]]
        at += n
    cache = MemoryCache(tensors, keys)
    logger.info(
        "cached %d samples of %r on %s (%.2f GiB)", rows, spec.split, device, cache.nbytes / 2**30
    )
    return cache


class CachedBatches:
    """Batches from a :class:`MemoryCache`. Train mode (``steps`` set): each epoch a
    permutation seeded by ``(seed, epoch, rank)``, ``steps`` whole batches (cycling);
    evaluation (``steps`` None): every row once, in order."""

    def __init__(
        self,
        cache: MemoryCache,
        batch_size: int,
        steps: int | None = None,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: should be >= 1")
        self.cache, self.batch_size, self.steps = cache, batch_size, steps
        self.seed, self.rank, self.epoch = seed, rank, 0
        self.dataset = self  # ``loader.dataset.set_epoch`` as for the streaming loader

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.steps is not None:
            return self.steps
        return math.ceil(len(self.cache) / self.batch_size)

    def order(self) -> np.ndarray:
        """The rows this epoch visits, in order."""
        n = len(self.cache)
        if self.steps is None:
            return np.arange(n)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        return np.resize(rng.permutation(n), self.steps * self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        rows = self.order()
        for start in range(0, len(rows), self.batch_size):
            yield self.cache.batch(rows[start : start + self.batch_size])


def cache_loader(
    spec: StreamSpec,
    where: str,
    device: torch.device,
    workers: int = 0,
    steps: int | None = None,
    free: int | None = None,
) -> CachedBatches:
    """Check the estimate, fill the cache (``where``: host | device) and wrap it in batches.
    ``free``: the free bytes to check against (default: measured)."""
    from latentcache.store import open_store

    target = device if where == "device" else torch.device("cpu")
    store = open_store(spec.store)
    count = split_count(store.split_info(spec.split))
    share = math.ceil(count / spec.world_size)
    need = share * sample_bytes(store, spec.split, spec.fields)
    what = f"{share} samples of split {spec.split!r}"
    check_fits(need, free_bytes(target) if free is None else free, where, what)
    if target.type == "cuda" and free is None:  # staged on the host while it is read
        check_fits(need, free_bytes(torch.device("cpu")), "host", what)
    cache = load_cache(spec, target, workers)
    return CachedBatches(cache, spec.batch_size, steps, spec.seed, spec.rank)

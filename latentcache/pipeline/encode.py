"""``run_encode``: a dataset in, a finished, verified-by-construction latent store out.

::

    EncodeConfig ─► build_index ─► plan shards (split, rows in seeded order) ─► StoreWriter (lock, resume)
         │                                   │ skip shards already committed
         │ load_codec once, scatter to workers ▼
         └──────────────► Dask (LocalCluster | scheduler address | in-process): encode_shard per shard
                                             │ commit records
                                             ▼
                              build manifest from the commits ─► manifest.json (last)
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentcache.codec.spec import check_encodable
from latentcache.config import DEFAULT_ORDER_SEED, DEFAULT_ROW_ORDER, EncodeConfig
from latentcache.datasets.base import DatasetIndex, build_index
from latentcache.images import header_size
from latentcache.pipeline.manifest_builder import build_manifest
from latentcache.pipeline.shard import (
    ShardSettings,
    ShardTask,
    commit_shard,
    compute_shard,
    encode_shard,
)
from latentcache.store.manifest import write_manifest
from latentcache.store.writer import StoreWriter
from latentcache.store.zarr_store import create_split

__all__ = ["EncodeResult", "order_samples", "plan_shards", "run_encode"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeResult:
    path: Path
    manifest: dict
    encoded_now: int  # shards run by this call (the rest were committed before: resume)
    resumed: bool


def order_samples(samples: list, order: str, seed: int, split: str) -> list:
    """The split's samples in the order their rows are written.

    ``index``: as the dataset lists them (sorted by class for most adapters);
    ``shuffled``: a permutation drawn from ``(seed, crc32(split))``, so the same seed and
    index give the same order on any machine (WebDataset's advice: shuffle before sharding).
    """
    if order == "index":
        return list(samples)
    rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
    return [samples[i] for i in rng.permutation(len(samples))]


def plan_shards(
    index: DatasetIndex,
    shard_size: int,
    order: str = DEFAULT_ROW_ORDER,
    seed: int = DEFAULT_ORDER_SEED,
) -> list[ShardTask]:
    """Per split, consecutive runs of ``shard_size`` samples in row order (:func:`order_samples`)."""
    tasks = []
    for split in index.split_names:
        samples = order_samples(index.split(split), order, seed, split)
        for i, start in enumerate(range(0, len(samples), shard_size)):
            chunk = tuple(samples[start : start + shard_size])
            tasks.append(ShardTask(split, i, start, start + len(chunk), chunk))
    return tasks


def _latent_hw(index: DatasetIndex) -> dict[str, list[int]]:
    """Per split, the largest latent (H/16, W/16 after padding to /64) read from image headers."""
    paths = [index.root / s.path for s in index.samples]
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(header_size, paths))
    out: dict[str, list[int]] = {}
    for s, hw in zip(index.samples, sizes, strict=True):
        lat = [4, 4] if hw is None else [math.ceil(v / 64) * 4 for v in hw]
        cur = out.setdefault(s.split, lat)
        out[s.split] = [max(a, b) for a, b in zip(cur, lat, strict=True)]
    return out


def _plan_record(config: EncodeConfig, index: DatasetIndex, codec, latent_hw) -> dict:
    return {
        "settings_sha256": config.content_hash(),
        "settings": config.content_dict(),
        "codec_weights_sha256": codec.weights_sha256,
        "index_sha256": index.sha256(),
        "latent_hw": latent_hw,
    }


def _create_arrays(path: Path, index: DatasetIndex, config: EncodeConfig, codec, latent_hw) -> None:
    n, m = codec.widths
    for split in index.split_names:
        samples = index.split(split)
        create_split(
            path,
            split,
            len(samples),
            config.shard_size,
            m,
            n,
            tuple(latent_hw[split]),
            config.scales_repr,
            keys=[s.key for s in samples],
        )


def _settings(config: EncodeConfig, index: DatasetIndex, latent_hw, threads: int) -> ShardSettings:
    return ShardSettings(
        store_path=str(Path(config.out).resolve()),
        data_root=str(index.root.resolve()),
        formats=tuple(config.formats),
        scales_repr=config.scales_repr,
        max_pixels=config.max_pixels,
        batch_size=config.effective_batch_size,
        device=config.device,
        latent_hw=latent_hw,
        torch_threads=threads,
    )


def _progress(total: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, unit="img", desc="encode", disable=None, file=sys.stderr, dynamic_ncols=True
    )


def _advance(bar, n: int, _future) -> None:
    bar.update(n)


def _run_local(tasks, codec, settings, bar) -> None:
    """In this process: shard k is written (one thread) while shard k+1 is encoded."""
    with ThreadPoolExecutor(1) as writer:
        pending = None
        for t in tasks:
            computed = compute_shard(t, codec, settings)
            if pending is not None:
                pending.result()
            pending = writer.submit(commit_shard, t, computed, settings)
            pending.add_done_callback(functools.partial(_advance, bar, len(t.samples)))
        if pending is not None:
            pending.result()


def _run_dask(tasks, codec, settings, config: EncodeConfig, bar) -> None:
    from distributed import Client, LocalCluster, as_completed

    if not logger.isEnabledFor(logging.DEBUG):  # distributed logs every worker start at INFO
        logging.getLogger("distributed").setLevel(logging.ERROR)
    cluster = None
    if config.scheduler:
        client = Client(config.scheduler)
    else:
        cluster = LocalCluster(
            n_workers=config.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
    try:
        codec_f = client.scatter(codec, broadcast=True)  # each worker deserializes the codec once
        futures = {
            client.submit(encode_shard, t, codec_f, settings, retries=2, pure=False): t
            for t in tasks
        }
        for fut in as_completed(futures):
            fut.result()  # re-raises a task's error (after retries) with its traceback
            bar.update(len(futures[fut].samples))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_encode(config: EncodeConfig, codec=None) -> EncodeResult:
    """Encode ``config.dataset`` into ``config.out``; resumes an unfinished store of the same settings.

    ``codec``: an already loaded :class:`~latentcache.codec.load.Codec` (tests, notebooks);
    by default it is loaded from ``config.codec``.
    """
    index = build_index(config.dataset, config.data_root, **config.dataset_options)
    if not index.samples:
        raise ValueError(f"dataset {config.dataset!r} at {index.root} lists no images")
    if codec is None:
        from latentcache.codec.load import load_codec

        codec = load_codec(config.codec)
    check_encodable(codec.spec.arch)  # a checkpoint may record another architecture
    path = Path(config.out)
    tasks = plan_shards(index, config.shard_size, config.order, config.order_seed)
    latent_hw = _latent_hw(index) if "zarr" in config.formats else {}
    with StoreWriter(
        path, _plan_record(config, index, codec, latent_hw), config.overwrite
    ) as writer:
        if "zarr" in config.formats:
            _create_arrays(path, index, config, codec, latent_hw)
        done = writer.committed()
        todo = [t for t in tasks if (t.split, t.index) not in done]
        if writer.resumed:
            logger.info(
                "resuming %s: %d of %d shards already committed",
                path,
                len(tasks) - len(todo),
                len(tasks),
            )
        threads = max(1, (os.cpu_count() or 1) // max(1, config.workers)) if config.workers else 0
        settings = _settings(config, index, latent_hw, threads)
        with _progress(sum(len(t.samples) for t in todo)) as bar:
            if not todo or (config.workers == 0 and not config.scheduler):
                _run_local(todo, codec, settings, bar)
            else:
                _run_dask(todo, codec, settings, config, bar)
        manifest = build_manifest(config, index, codec, tasks, writer.committed(), latent_hw)
        write_manifest(path, manifest)
    return EncodeResult(path, manifest, len(todo), writer.resumed)

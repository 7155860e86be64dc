"""``run_encode``: a dataset in, a finished, verified-by-construction latent store out.

::

    EncodeConfig ─► build_index ─► plan shards (split, rows in seeded order) ─► StoreWriter (lock, run token, resume)
         │                                   │ skip shards already committed
         │ load_codec once, scatter to workers ▼
         └──► in-process: compute_shard k+1 ║ commit_shard k   (one writer thread)
              Dask (LocalCluster | scheduler): per shard compute_shard ─► commit_shard, two tasks;
                   each worker runs one compute ("encode" resource) while it writes the previous
                   shard ("write" resource); commits fenced by the run token
                                             │ commit records
                                             ▼
                              build manifest from the commits ─► manifest.json (last)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentcache.codec.spec import check_encodable
from latentcache.config import DEFAULT_ORDER_SEED, DEFAULT_ROW_ORDER, EncodeConfig
from latentcache.datasets.adapters import build_index
from latentcache.datasets.base import DatasetIndex
from latentcache.errors import ConfigError
from latentcache.images import header_size
from latentcache.pipeline.manifest_builder import build_manifest
from latentcache.pipeline.shard import (
    FLOAT_THREADS,
    ShardSettings,
    ShardTask,
    commit_shard,
    compute_shard,
    encode_shard,
)
from latentcache.store.manifest import write_manifest
from latentcache.store.writer import StoreWriter
from latentcache.store.zarr_store import create_split
from latentcache.tasks import TASKS, get_task

__all__ = ["EncodeResult", "available_cores", "order_samples", "plan_shards", "run_encode"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeResult:
    path: Path
    manifest: dict
    encoded_now: int  # shards run by this call (the rest were committed before: resume)
    resumed: bool
    timings: dict = field(default_factory=dict)  # startup_s (cluster, codec), encode_s (tasks)


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


def _planned_sizes(index: DatasetIndex) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Per split, from the image headers: the largest latent (H/16, W/16 after padding to
    /64) and the largest image (H, W), which size the Zarr arrays."""
    paths = [index.root / s.path for s in index.samples]
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(header_size, paths))
    latent: dict[str, list[int]] = {}
    image: dict[str, list[int]] = {}
    for s, hw in zip(index.samples, sizes, strict=True):
        hw = hw or (1, 1)
        lat = [math.ceil(v / 64) * 4 for v in hw]
        latent[s.split] = [max(a, b) for a, b in zip(latent.get(s.split, lat), lat, strict=True)]
        image[s.split] = [max(a, b) for a, b in zip(image.get(s.split, hw), hw, strict=True)]
    return latent, image


def _plan_record(config: EncodeConfig, index: DatasetIndex, codec, latent_hw) -> dict:
    return {
        "settings_sha256": config.content_hash(),
        "settings": config.content_dict(),
        "codec_weights_sha256": codec.weights_sha256,
        "index_sha256": index.sha256(),
        "latent_hw": latent_hw,
    }


def _create_arrays(
    path: Path, index: DatasetIndex, config: EncodeConfig, codec, latent_hw, image_hw
) -> None:
    n, m = codec.widths
    task = get_task(index.task)
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
            inputs=codec.inputs,
            targets=task.zarr_arrays(tuple(image_hw[split])),
            ragged=task.ragged_targets,
        )


def _settings(
    config: EncodeConfig, index: DatasetIndex, latent_hw, image_hw, run_token: str
) -> ShardSettings:
    return ShardSettings(
        store_path=str(Path(config.out).resolve()),
        data_root=str(index.root.resolve()),
        formats=tuple(config.formats),
        scales_repr=config.scales_repr,
        max_pixels=config.max_pixels,
        batch_size=config.effective_batch_size,
        device=config.device,
        latent_hw=latent_hw,
        torch_threads=FLOAT_THREADS,
        run_token=run_token,
        pipelined=config.device != "cpu",  # on the CPU both stages would share the same cores
        task=index.task,
        image_hw=image_hw,
    )


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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


@contextlib.contextmanager
def _dask_client(config: EncodeConfig):
    """A client of ``config.scheduler``, or of a LocalCluster of ``config.workers`` processes
    (each: one encode thread and one write thread), closed on exit, Ctrl-C included."""
    from distributed import Client

    from latentcache.pipeline.workers import WorkerSetup, local_cluster

    if not logger.isEnabledFor(logging.DEBUG):  # distributed logs every worker start at INFO
        logging.getLogger("distributed").setLevel(logging.ERROR)
    if config.scheduler:
        with Client(config.scheduler) as client:
            yield client
        return
    cores = available_cores()
    if config.workers * FLOAT_THREADS > cores:
        logger.warning(
            "%d workers x %d torch threads exceed the %d available cores",
            config.workers,
            FLOAT_THREADS,
            cores,
        )
    with local_cluster(config.workers, config.dashboard) as cluster, Client(cluster) as client:
        client.register_plugin(WorkerSetup(logging.getLogger("distributed").level))
        yield client


def _dashboard_link(client) -> str | None:
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        return None  # distributed serves no dashboard without bokeh
    return client.dashboard_link


def _overlaps_writes(client) -> bool:
    """Every worker offers both resources (a LocalCluster of ours, or workers started with
    ``--resources "encode=1 write=1" --nthreads 2``)."""
    from latentcache.pipeline.workers import RESOURCES

    workers = client.scheduler_info()["workers"].values()
    return bool(workers) and all(
        all(w.get("resources", {}).get(r, 0) >= 1 for r in RESOURCES) for w in workers
    )


def _submit(client, tasks, codec_f, settings) -> dict:
    """One future per shard, resolving to its commit record."""
    if not _overlaps_writes(client):
        return {
            client.submit(encode_shard, t, codec_f, settings, retries=2, pure=False): t
            for t in tasks
        }
    futures = {}
    for t in tasks:  # submission order = priority: a shard's write goes before later encodes
        computed = client.submit(
            compute_shard, t, codec_f, settings, resources={"encode": 1}, retries=2, pure=False
        )
        commit = client.submit(
            commit_shard, t, computed, settings, resources={"write": 1}, retries=2, pure=False
        )
        futures[commit] = t
    return futures


def _run_dask(tasks, codec, settings, config: EncodeConfig, bar, on_dashboard, timings) -> None:
    from distributed import as_completed

    t0 = time.perf_counter()
    with _dask_client(config) as client:
        link = _dashboard_link(client)
        if link:
            logger.info("Dask dashboard: %s", link)
            if on_dashboard is not None:
                on_dashboard(link)
        codec_f = client.scatter(codec, broadcast=True)  # each worker deserializes the codec once
        t1 = time.perf_counter()
        futures = _submit(client, tasks, codec_f, settings)
        for fut in as_completed(futures):
            fut.result()  # re-raises a task's error (after retries) with its traceback
            bar.update(len(futures[fut].samples))
        timings.update(startup_s=t1 - t0, encode_s=time.perf_counter() - t1)


def run_encode(
    config: EncodeConfig,
    codec=None,
    on_dashboard: Callable[[str], None] | None = None,
    index: DatasetIndex | None = None,
) -> EncodeResult:
    """Encode ``config.dataset`` into ``config.out``; resumes an unfinished store of the same settings.

    ``codec``: an already loaded :class:`~latentcache.codec.load.Codec` (tests, notebooks);
    by default it is loaded from ``config.codec``. ``on_dashboard``: called with the Dask
    dashboard's address once the cluster is up. ``index``: an already built listing (tests,
    notebooks); by default ``config.dataset`` is indexed under ``config.data_root``.
    """
    if config.download:
        from latentcache.download import DownloadConfig, run_download

        run_download(DownloadConfig(config.dataset, config.data_root))
    if index is None:
        index = build_index(config.dataset, config.data_root, **config.dataset_options)
    if not index.samples:
        raise ValueError(f"dataset {config.dataset!r} at {index.root} lists no images")
    if index.task not in TASKS:  # its targets need a task unit's store schema
        raise ConfigError(
            f"dataset {config.dataset!r} is a {index.task} dataset; this version stores the "
            f"targets of {sorted(TASKS)} only"
        )
    if codec is None:
        from latentcache.codec.load import load_codec

        codec = load_codec(config.codec)
    check_encodable(codec.spec.arch, config.scales_repr)  # a checkpoint may record its own
    path = Path(config.out)
    tasks = plan_shards(index, config.shard_size, config.order, config.order_seed)
    latent_hw, image_hw = _planned_sizes(index) if "zarr" in config.formats else ({}, {})
    timings: dict = {}
    with StoreWriter(
        path, _plan_record(config, index, codec, latent_hw), config.overwrite
    ) as writer:
        if "zarr" in config.formats:
            _create_arrays(path, index, config, codec, latent_hw, image_hw)
        done = writer.committed()
        todo = [t for t in tasks if (t.split, t.index) not in done]
        if writer.resumed:
            logger.info(
                "resuming %s: %d of %d shards already committed",
                path,
                len(tasks) - len(todo),
                len(tasks),
            )
        settings = _settings(config, index, latent_hw, image_hw, writer.run_token)
        with _progress(sum(len(t.samples) for t in todo)) as bar:
            if not todo or (config.workers == 0 and not config.scheduler):
                t0 = time.perf_counter()
                _run_local(todo, codec, settings, bar)
                timings.update(startup_s=0.0, encode_s=time.perf_counter() - t0)
            else:
                _run_dask(todo, codec, settings, config, bar, on_dashboard, timings)
        manifest = build_manifest(
            config, index, codec, tasks, writer.committed(), latent_hw, image_hw
        )
        write_manifest(path, manifest)
    return EncodeResult(path, manifest, len(todo), writer.resumed, timings)

"""One encode task = one shard: read, encode, extract, verify, write, commit.

::

    ShardTask(split, index, rows, samples)
      │ read bytes ─► sha256 ─► load_image (EXIF, any mode -> RGB, bomb limit)   failures ─┐
      │ group by padded size ─► analyze_batch (g_a, h_a on --device, batched)              │
      │                         └► code_batch (CPU thread: entropy coding, h_s, latents)   │
      ▼                                                                                   ▼
    compute_shard ─► EncodedSample ...
    commit_shard  ─► fenced_commit(run token) { zarr rows [start, stop) and/or
                     wds/<split>-<index>.tar ─► commits/<split>-<index>.json }

On a GPU the two stages form a pipeline: batch k+1 runs ``g_a`` while a CPU thread codes
batch k (CompressAI's rANS coder holds the GIL: one coder thread per process; more coders come
from more worker processes). The float transforms run on a pinned number of torch threads
(``ShardSettings.torch_threads``): ``g_a``'s floats change with torch's thread count
(measured), so pinning it makes a store the same bytes whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentcache.datasets.base import Sample
from latentcache.errors import SampleError
from latentcache.images import LoadedImage, load_image
from latentcache.store.manifest import file_entry, write_json_atomic
from latentcache.store.records import EncodedSample, SampleFailure
from latentcache.store.scales import scale_floor, scales_payload, scales_to_float
from latentcache.store.wds_store import WDS_DIR, tar_name, write_tar
from latentcache.store.writer import commit_path, fenced_commit
from latentcache.store.zarr_store import shard_files, write_rows
from latentcache.tasks import get_task

__all__ = [
    "ShardTask",
    "ShardSettings",
    "encode_shard",
    "compute_shard",
    "commit_shard",
    "encode_samples",
    "encoder_record",
    "pinned_threads",
]

logger = logging.getLogger(__name__)
FLOAT_THREADS = 1  # torch threads of the float transforms in every encoder process (pinned)
PIPELINE_DEPTH = 2  # analysed batches waiting for the coder thread, at most


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    start: int  # first Zarr row of this shard
    stop: int
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class ShardSettings:
    store_path: str
    data_root: str
    formats: tuple[str, ...]
    scales_repr: str
    max_pixels: int
    batch_size: int
    device: str
    latent_hw: dict  # split -> [h, w] the Zarr arrays hold
    torch_threads: int = FLOAT_THREADS  # pinned: floats (and so bytes) depend on it
    run_token: str = ""  # the run this task belongs to; its commit is refused once stale
    pipelined: bool = False  # g_a of the next batch while a CPU thread codes this one (GPU)
    task: str = "classification"  # latentcache.tasks: which targets each sample carries
    image_hw: dict | None = None  # split -> [H, W] the Zarr target arrays hold


def _load(sample: Sample, root: Path, max_pixels: int) -> LoadedImage:
    try:
        data = (root / sample.path).read_bytes()
    except OSError as exc:
        raise SampleError(f"unreadable file: {exc.strerror or exc}") from None
    return load_image(data, max_pixels)


def _padded(hw: tuple[int, int]) -> tuple[int, int]:
    return tuple(math.ceil(v / 64) * 64 for v in hw)


def _batches(loaded: dict[int, LoadedImage], batch_size: int):
    """Indices grouped by padded size, in batches of at most ``batch_size``."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, im in loaded.items():
        groups[_padded(im.rgb.shape[:2])].append(i)
    for idx in groups.values():
        for k in range(0, len(idx), batch_size):
            yield idx[k : k + batch_size]


def _to_tensor(images: list[np.ndarray]):
    import torch

    from latentcache.codec.latents import pad_image

    x = [pad_image(torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0)) for a in images]
    return torch.stack(x)


def encode_samples(model, samples, root: Path, settings: ShardSettings):
    """Yield ``(EncodedSample, Latents)`` or ``SampleFailure`` for ``samples``, in order."""
    results: dict[int, tuple | SampleFailure] = {}
    loaded: dict[int, LoadedImage] = {}
    for i, s in enumerate(samples):
        try:
            loaded[i] = _load(s, root, settings.max_pixels)
        except SampleError as exc:
            results[i] = SampleFailure(s.key, s.path, s.split, str(exc))
    batches = list(_batches(loaded, settings.batch_size))
    for batch, out in _encoded_batches(model, loaded, batches, settings):
        for i, lat in zip(batch, out, strict=True):
            results[i] = _record(samples[i], loaded[i], lat, settings)
    for i in range(len(samples)):
        yield results[i]


def _encoded_batches(model, loaded, batches, settings: ShardSettings):
    """``(batch, latents)`` per batch; pipelined: g_a of batch k+1 while batch k is coded."""
    from latentcache.codec.latents import analyze_batch, code_batch

    def analysed(batch):
        x = _to_tensor([loaded[i].rgb for i in batch])
        return (*analyze_batch(model, x, settings.device), [loaded[i].rgb.shape[:2] for i in batch])

    if not settings.pipelined:
        for batch in batches:
            yield batch, code_batch(model, *analysed(batch))
        return
    with ThreadPoolExecutor(1, thread_name_prefix="coder") as coder:
        pending: deque = deque()
        for batch in batches:
            pending.append((batch, coder.submit(code_batch, model, *analysed(batch))))
            while len(pending) > PIPELINE_DEPTH:
                done, fut = pending.popleft()
                yield done, fut.result()
        while pending:
            done, fut = pending.popleft()
            yield done, fut.result()


def _record(
    s: Sample, im: LoadedImage, lat, settings: ShardSettings
) -> EncodedSample | SampleFailure:
    if isinstance(lat, SampleError):
        return SampleFailure(s.key, s.path, s.split, str(lat))
    limit = settings.latent_hw.get(s.split)
    if (
        "zarr" in settings.formats
        and limit
        and any(a > b for a, b in zip(lat.y_hat.shape[-2:], limit, strict=True))
    ):
        return SampleFailure(
            s.key,
            s.path,
            s.split,
            f"latent {tuple(lat.y_hat.shape[-2:])} exceeds the split's planned {tuple(limit)}",
        )
    from latentcache.codec.latents import canvas_offset

    hw = tuple(int(v) for v in im.rgb.shape[:2])
    room = (settings.image_hw or {}).get(s.split)
    task = get_task(settings.task)
    if "zarr" in settings.formats and task.target_names and room:
        if hw[0] > room[0] or hw[1] > room[1]:
            return SampleFailure(
                s.key, s.path, s.split, f"image {hw} exceeds the split's planned {tuple(room)}"
            )
    try:
        targets = task.read_targets(s.target, Path(settings.data_root), hw)
    except SampleError as exc:
        return SampleFailure(s.key, s.path, s.split, str(exc))
    return EncodedSample(
        key=s.key,
        label=s.label,
        split=s.split,
        path=s.path,
        source_sha256=im.sha256,
        image_size=hw,
        bpp=lat.bpp,
        bpp_estimate=lat.bpp_estimate,
        y_string=lat.y_string,
        z_string=lat.z_string,
        z_shape=lat.z_shape,
        y_hat=lat.y_hat,
        scales=scales_payload(lat, settings.scales_repr),
        means_hat=lat.means_hat,
        canvas_offset=canvas_offset(*hw),
        targets=targets,
    ), lat


def _stats(pairs, scales_repr: str, scale_table, floor: float) -> dict:
    """Partial sums for the split's normalization statistics: the decoder's y_hat (symbols +
    means_hat where there are means), log σ̂ floored at the codec's own lower bound
    (``scale_floor``), as training normalizes it, and means_hat."""
    acc = dict.fromkeys(("n", "y_sum", "y_sq", "s_sum", "s_sq", "m_sum", "m_sq"), 0.0)
    for rec, lat in pairs:
        y = rec.y_hat.astype(np.float64)
        if rec.means_hat is not None:
            m = rec.means_hat.astype(np.float64)
            y = (rec.y_hat.astype(np.float32) + rec.means_hat).astype(np.float64)
            acc["m_sum"] += m.sum()
            acc["m_sq"] += (m * m).sum()
        acc["n"] += y.size
        acc["y_sum"] += y.sum()
        acc["y_sq"] += (y * y).sum()
        if rec.scales is None:
            continue
        s = (
            lat.scales_hat
            if scales_repr in ("z_hat", "float32")
            else scales_to_float(rec.scales, scales_repr, scale_table)
        )
        ls = np.log(np.maximum(s.astype(np.float64), floor))
        acc["s_sum"] += ls.sum()
        acc["s_sq"] += (ls * ls).sum()
    return acc


def encode_shard(task: ShardTask, codec, settings: ShardSettings) -> dict:
    """Run one shard end to end and commit it; returns the commit record (the Dask task)."""
    return commit_shard(task, compute_shard(task, codec, settings), settings)


@contextlib.contextmanager
def pinned_threads(n: int):
    """torch's intra-op threads set to ``n`` for the block (process-wide), then restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def compute_shard(task: ShardTask, codec, settings: ShardSettings) -> dict:
    """Everything but the writes: samples, failures and the commit record's figures."""
    with pinned_threads(settings.torch_threads):
        out = list(encode_samples(codec.model, task.samples, Path(settings.data_root), settings))
    pairs = [r for r in out if isinstance(r, tuple)]
    stored = [rec for rec, _ in pairs]
    gc = getattr(codec.model, "gaussian_conditional", None)
    table = gc.scale_table.numpy() if gc is not None else np.zeros(0, np.float32)
    return {
        "stored": stored,
        "record": {
            "split": task.split,
            "index": task.index,
            "rows": [task.start, task.stop],
            "indexed": len(task.samples),
            "count": len(stored),
            "failures": [r.to_dict() for r in out if isinstance(r, SampleFailure)],
            "bpp": [r.bpp for r in stored],
            "bpp_estimate": [r.bpp_estimate for r in stored],
            "bitstream_bytes": sum(len(r.y_string) + len(r.z_string) for r in stored),
            "latent_shapes": sorted({tuple(r.latent_shape) for r in stored}),
            "image_size_max": [max((r.image_size[i] for r in stored), default=0) for i in (0, 1)],
            "stats": _stats(pairs, settings.scales_repr, table, scale_floor(codec.model)),
            "inputs": list(codec.inputs),
            "encoder": encoder_record(settings),
        },
    }


def encoder_record(settings: ShardSettings) -> dict:
    """Where and with what this shard's floats were computed: the reasons its bytes could
    differ from another run's (README, "Scale-out")."""
    import compressai
    import torch

    device = settings.device
    rec = {
        "device": device,
        "torch": torch.__version__,
        "compressai": compressai.__version__,
        "torch_threads": settings.torch_threads,
        "batch_size": settings.batch_size,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        rec["device_name"] = torch.cuda.get_device_name(torch.device(device))
        rec["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
    return rec


def commit_shard(task: ShardTask, computed: dict, settings: ShardSettings) -> dict:
    """Write the shard's files, then its commit record (atomic): only now does it count.

    Fenced: nothing is written unless ``settings.run_token`` still owns the store
    (:class:`~latentcache.errors.StaleRunError` otherwise); a shard this run already committed
    (a retried or duplicated task) is not written again.
    """
    store = Path(settings.store_path)
    path = commit_path(store, task.split, task.index)
    with fenced_commit(store, settings.run_token):
        done = _own_commit(path, settings.run_token)
        if done is not None:
            return done
        files = _write(store, task, computed["stored"], settings)
        record = {**computed["record"], "files": files, "run_token": settings.run_token}
        write_json_atomic(path, record)
    return record


def _own_commit(path: Path, run_token: str) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return rec if rec.get("run_token") == run_token else None


def _write(
    store: Path, task: ShardTask, stored: list[EncodedSample], settings: ShardSettings
) -> dict:
    """Both layouts at once (their compressors release the GIL); returns the file entries."""

    def zarr_files():
        write_rows(store, task.split, task.start, task.stop, stored)
        return [file_entry(f, store) for f in shard_files(store, task.split, task.index)]

    def wds_files():
        tar = store / WDS_DIR / tar_name(task.split, task.index)
        write_tar(tar, stored, settings.scales_repr, get_task(settings.task))
        return [file_entry(tar, store)]

    writers = {"zarr": zarr_files, "webdataset": wds_files}
    with ThreadPoolExecutor(2) as pool:
        futures = {fmt: pool.submit(writers[fmt]) for fmt in settings.formats}
        return {fmt: f.result() for fmt, f in futures.items()}

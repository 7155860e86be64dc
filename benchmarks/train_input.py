"""Training-side benchmark: what streaming stored latents saves, side by side in one run.

    python benchmarks/train_input.py [--images 128] [--size 384] [--min-samples 4000]
        [--repeats 3] [--workers 0 2] [--redecode-samples 128] [--epoch-steps 1] [--epoch-repeats 2]
        [--codec demo|random] [--threads 1] [--only loaders|epochs] [--gpu]

MINC size by default: 384² images -> 24x24 latents, M = 192 (the demo codec's widths).

1. Input pipeline, samples/s delivered as training batches of 64 (shuffled, mixed, in the
   stored dtypes, before augmentation), Zarr and WebDataset, with 0 and 2 worker processes:
   each run streams >= --min-samples samples in one pass (cycling the generated store: several
   of its epochs) after an untimed pass that starts the workers. Beside it, in the same run: the decompression
   floor (numcodecs alone on the same chunks) and re-decoding every bitstream each epoch as
   the reference implementation does (entropy-decode z, h_s, build_indexes, entropy-decode
   y; never g_s). Median and spread ((max - min) / median) over --repeats. Blosc runs one
   thread per process (as in a DataLoader worker); loaders recycle their batch buffers, as
   the trainer's do.
   Goals: >= 30x re-decoding; >= 5,000 raw samples/s per worker process.
2. One training epoch on this CPU at the papers' batch size (64, torfason2018): cResNet-39
   on latents (loader + augmentation: resize 32 + crop 28 as gupta2024; and native 24x24
   with a flip) against ResNet-50 on the same images as 224² JPEGs (PIL decode, flip,
   normalize). Each model's GMACs per sample (forward, at the size it sees) are printed
   beside its measured ratio, so compute and input cost can be told apart. Goal: >= 2x.
3. --gpu (needs CUDA; never required): benchmarks/train_speed.py on this store: compute only,
   input path only and end to end (streaming and --cache device), with the share of each
   step spent waiting for data, for the cResNets on the latents and ResNet-50 on 224² JPEGs
   decoded on the GPU (torchvision.io.decode_jpeg), at batch 64, 128 and 256.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import bench_codec
from _train_steps import count_gmacs, latent_epoch, pixel_epoch, write_jpegs

warnings.filterwarnings("ignore")

BATCH = 64  # torfason2018's training batch size; the loaders' too


def make_images(root: Path, n: int, size: int) -> Path:
    """``n`` RGB crops in class folders (one per source image), written in class order."""
    from PIL import Image
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    sources += [np.stack([getattr(data, t)()] * 3, -1) for t in ("brick", "grass", "gravel")]
    rng = np.random.default_rng(0)
    sources = [_at_least(np.ascontiguousarray(src[..., :3]), size) for src in sources]
    for i in range(n):
        src = sources[i % len(sources)]
        y, x = rng.integers(0, src.shape[0] - size + 1), rng.integers(0, src.shape[1] - size + 1)
        folder = root / f"class{i % len(sources)}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(src[y : y + size, x : x + size])).save(
            folder / f"img{i:04d}.png"
        )
    return root


def _at_least(rgb: np.ndarray, size: int) -> np.ndarray:
    """Upscale an image whose shorter side is below ``size``."""
    from PIL import Image

    scale = size / min(rgb.shape[:2])
    if scale <= 1:
        return rgb
    h, w = (int(np.ceil(d * scale)) for d in rgb.shape[:2])
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BICUBIC))


def encode_store(codec, root: Path, out: Path, shard_size: int) -> Path:
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    config = EncodeConfig(
        dataset="imagefolder", data_root=str(root), out=str(out), workers=0, shard_size=shard_size
    )
    run_encode(config, codec)
    return out


def _repeat(fn, repeats: int) -> tuple[list[float], int]:
    """Rates (items/s) of ``repeats`` calls of ``fn() -> (items, seconds)``."""
    rates, n = [], 0
    for _ in range(repeats):
        n, seconds = fn()[:2]
        rates.append(n / seconds)
    return rates, n


def _cpu_seconds() -> float:
    """CPU time of this process and its live children (DataLoader workers), from /proc."""
    import multiprocessing
    import os

    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def _timed(fn):
    """``fn() -> items`` as ``() -> (items, wall seconds, CPU seconds)``."""

    def run():
        t0, c0 = time.perf_counter(), _cpu_seconds()
        n = fn()
        return n, time.perf_counter() - t0, _cpu_seconds() - c0

    return run


def _summary(rates: list[float]) -> tuple[float, float]:
    median = statistics.median(rates)
    return median, (max(rates) - min(rates)) / median


# ------------------------------------------------------------- 1. the input pipeline


def loader_run(store_path: Path, fmt: str, workers: int, samples: int):
    """A loader with ``workers`` processes streaming ``samples`` in one pass (cycling the
    store: several of its epochs), after an untimed pass that starts the workers."""
    from latentcache.train.data import StreamSpec, build_loader

    spec = StreamSpec(
        store=str(store_path), split="train", fmt=fmt, shuffle=True, batch_size=BATCH,
        batches_per_rank=-(-samples // BATCH),
    )  # fmt: skip
    loader = build_loader(spec, workers=workers, recycle=True)

    loader.dataset.set_epoch(0)
    for _ in loader:  # starts the (persistent) workers, fills caches
        pass

    def run() -> int:
        loader.dataset.set_epoch(1)
        return sum(len(b["label"]) for b in loader)

    return _timed(run)


def floor_run(store_path: Path, epochs: int):
    """numcodecs alone on the same stored chunks: each array's compressor (as its zarr.json
    declares: Blosc-zstd bitshuffle for y_hat and the scale index in layout 2), per sample."""
    import numcodecs

    from latentcache.store import open_store
    from latentcache.store.shard_reader import open_shard, read_layout

    store = open_store(store_path)
    work = []
    for name in ("y_hat", "scales_hat"):
        layout = read_layout(store.open_file, f"zarr/train/{name}")
        (compressor,) = [c for c in layout.byte_codecs if c["name"] != "crc32c"]
        crc = 4 * sum(c["name"] == "crc32c" for c in layout.byte_codecs)
        decoder = numcodecs.get_codec(
            {"id": compressor["name"], **(compressor.get("configuration") or {})}
            if compressor["name"] != "blosc"
            else {"id": "blosc"}
        )
        for shard in range(layout.num_shards):
            sf = open_shard(store.open_file, f"zarr/train/{name}", layout, shard)
            work += [
                (decoder, bytes(b)[: len(b) - crc] if crc else bytes(b))
                for b in sf.chunk_bytes(0, layout.chunks_per_shard)
                if b
            ]
    samples = len(work) // 2

    def run() -> int:
        for _ in range(epochs):
            for decoder, c in work:
                decoder.decode(c)
        return samples * epochs

    return _timed(run)


def redecode_run(codec, store_path: Path, samples: int):
    """The reference implementation: bytes -> y_hat, scales_hat for every sample, every epoch."""
    import torch

    from latentcache.store import open_store

    model = codec.model
    zs = open_store(store_path).zarr_split("train")
    rows = zs.read(0, min(samples, len(zs)), bitstreams=True)

    def run() -> int:
        with torch.no_grad():
            for y, z, shape in zip(
                rows["y_string"], rows["z_string"], rows["z_shape"], strict=True
            ):
                z_hat = model.entropy_bottleneck.decompress([z], tuple(int(v) for v in shape))
                scales_hat = model.h_s(z_hat)
                idx = model.gaussian_conditional.build_indexes(scales_hat)
                model.gaussian_conditional.decompress([y], idx, z_hat.dtype)
        return len(rows["y_string"])

    return _timed(run)


def bench_loaders(args, codec, store: Path, count: int) -> None:
    """Every contender once per round, ``--repeats`` rounds: load drift on a shared machine
    hits all of them alike. Rates per wall second and per CPU second (all processes)."""
    epochs = max(1, math.ceil(args.min_samples / count))
    runs = {"decompression floor (numcodecs)": (floor_run(store, epochs), 1)}
    for fmt, label in (("zarr", "Zarr"), ("webdataset", "WebDataset")):
        for w in args.workers:
            runs[f"loader, {label}, {w} workers"] = (
                loader_run(store, fmt, w, epochs * count),
                max(w, 1),
            )
    runs["re-decode bitstreams"] = (redecode_run(codec, store, args.redecode_samples), 1)
    walls: dict[str, list[float]] = {k: [] for k in runs}
    cpus: dict[str, list[float]] = {k: [] for k in runs}
    counts = {}
    for _ in range(args.repeats):
        for name, (run, _procs) in runs.items():
            n, wall, cpu = run()
            walls[name].append(n / wall)
            cpus[name].append(n / max(cpu, 1e-9))
            counts[name] = n
    decode = statistics.median(walls["re-decode bitstreams"])
    decode_cpu = statistics.median(cpus["re-decode bitstreams"])
    print(f"{'input pipeline, batch 64':<34}{'samples':>8}{'samples/s':>10}{'spread':>7}"
          f"{'per process':>12}{'per CPU-s':>10}{'vs re-decode':>13}{'(CPU)':>8}")  # fmt: skip
    for name, (_run, procs) in runs.items():
        median, spread = _summary(walls[name])
        cpu = statistics.median(cpus[name])
        print(
            f"{name:<34}{counts[name]:>8}{median:>10.0f}{spread:>7.0%}{median / procs:>12.0f}"
            f"{cpu:>10.0f}{median / decode:>12.1f}x{cpu / decode_cpu:>7.1f}x"
        )


# ------------------------------------------------------------- 2. one training epoch


def bench_epochs(args, store: Path, images: Path, tmp: Path) -> None:
    import torch

    from latentcache.store import open_store
    from latentcache.train.models import create_classifier

    st = open_store(store)
    m, classes = st.num_channels, len(st.classes)
    files = write_jpegs(images, tmp / "jpeg")
    samples = BATCH * args.epoch_steps
    hw = tuple(st.split_info("train")["latent_shape"])
    cres = create_classifier("cresnet39", m, classes)
    res50 = create_classifier("resnet50", 3, classes, pretrained=False)
    lat = cres.inputs
    gmacs = {
        "cresnet39, crop 28": count_gmacs(cres, [torch.zeros(1, m, 28, 28) for _ in lat]),
        f"cresnet39, native {hw[0]}": count_gmacs(cres, [torch.zeros(1, m, *hw) for _ in lat]),
        "ResNet-50 on JPEG 224": count_gmacs(res50, [torch.zeros(1, 3, 224, 224)]),
    }
    epochs = {
        "cresnet39, crop 28": lambda: latent_epoch(store, BATCH, samples, native=False),
        f"cresnet39, native {hw[0]}": lambda: latent_epoch(store, BATCH, samples, native=True),
        "ResNet-50 on JPEG 224": lambda: pixel_epoch(files, BATCH, samples, classes),
    }
    timed = {name: _summary(_repeat(fn, args.epoch_repeats)[0]) for name, fn in epochs.items()}
    base = timed["ResNet-50 on JPEG 224"][0]
    print(f"\n{'one training epoch, batch 64':<30}{'samples':>8}{'samples/s':>11}{'spread':>8}"
          f"{'GMACs':>8}{'speed-up':>10}")  # fmt: skip
    for name, (median, spread) in timed.items():
        print(
            f"{name:<30}{samples:>8}{median:>11.2f}{spread:>8.0%}{gmacs[name]:>8.2f}"
            f"{median / base:>9.2f}x"
        )


# ------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=128, help="images encoded into the store")
    ap.add_argument("--size", type=int, default=384, help="image side (384: MINC's 24x24 latents)")
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--min-samples", type=int, default=4000, help="samples per loader run")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--redecode-samples", type=int, default=128)
    ap.add_argument("--epoch-steps", type=int, default=1, help="timed steps of batch 64 per epoch")
    ap.add_argument("--epoch-repeats", type=int, default=2)
    ap.add_argument("--codec", choices=["demo", "random"], default="demo")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["loaders", "epochs"], default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier)")
    ap.add_argument("--gpu", action="store_true", help="train_speed.py's benchmark on CUDA")
    from train_speed import add_arguments

    add_arguments(ap)  # --batches, --steps, ... of train_speed.py, for --gpu
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from numcodecs import blosc

    blosc.use_threads = False  # one core per process: the floor and 0 workers as a worker
    logging.disable(logging.INFO)
    tmp = Path(tempfile.mkdtemp(prefix="lc-bench-train-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path) -> None:
    import os

    import torch

    root = make_images(tmp / "images", args.images, args.size)
    codec, what = bench_codec(args.codec)
    store = encode_store(codec, root, tmp / "store", args.shard_size)
    from latentcache.store import open_store

    info = open_store(store).split_info("train")
    print(
        f"{info['stored']} images {args.size}x{args.size} -> latents {info['latent_shape']} x "
        f"M={codec.model.M}, {what}; {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}; median of {args.repeats} (epochs: {args.epoch_repeats})\n"
    )
    if args.gpu:
        from train_speed import run_speed

        args.device = "cuda"
        run_speed(store, root, tmp, args)
        return
    if args.only in (None, "loaders"):
        bench_loaders(args, codec, store, int(info["stored"]))
    if args.only in (None, "epochs"):
        bench_epochs(args, store, root, tmp)


if __name__ == "__main__":
    main()

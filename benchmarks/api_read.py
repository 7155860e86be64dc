"""The public read path against the trainer's loader and re-decoding, side by side in one run.

    python benchmarks/api_read.py [--images 96] [--size 384] [--shard-size 64]
        [--min-samples 2000] [--repeats 3] [--redecode-samples 64] [--codec demo|random]

MINC size by default: 384² images -> 24x24 latents, M = 192 (the demo codec's widths); one
thread (torch and Blosc), one process. Contenders, each once per round, --repeats rounds:

- ``open_store(...).zarr_split("train").read(a, b, dtype=...)`` block by block (one Zarr
  shard per call), ``dtype="stored"`` (int16 y_hat, uint8 index) and ``dtype="float"``
  (float32 sigma-hat);
- the same rows through zarr-python (``zarr_store.read_rows`` + the scale-table lookup: the
  public path before it shared the loader's reader);
- the trainer's loader in-process (``build_loader(..., workers=0)``, shuffled batches of 64
  in the stored dtypes, buffers recycled: what ``latentcache train`` runs);
- re-decoding every bitstream as the reference implementation does (entropy-decode z, h_s,
  build_indexes, entropy-decode y; never g_s).

Goals: the public API with stored dtypes >= 0.8x the loader; with float sigma-hat >= 30x
re-decoding.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import statistics
import tempfile
import warnings
from pathlib import Path

from _common import bench_codec
from train_input import encode_store, loader_run, make_images, redecode_run

warnings.filterwarnings("ignore")


def api_run(store_path: Path, dtype: str, epochs: int):
    """``zarr_split(...).read(a, b, dtype)`` over every block of the split, ``epochs`` times."""
    from latentcache.store import open_store

    zs = open_store(store_path).zarr_split("train")
    zs.read(0, 1, dtype=dtype)  # layouts read once, as a long-lived reader would

    def run() -> int:
        return sum(
            len(zs.read(a, b, dtype=dtype)["key"]) for _ in range(epochs) for a, b in zs.blocks()
        )

    return _timed(run)


def zarr_python_run(store_path: Path, epochs: int):
    """The same rows through zarr-python, sigma-hat looked up in the scale table."""
    import numpy as np

    from latentcache.store import open_store
    from latentcache.store.zarr_store import read_rows

    store = open_store(store_path)
    zs = store.zarr_split("train")
    names = ["key", "label", "bpp", "y_hat", "latent_shape", "scales_hat"]

    def run() -> int:
        n = 0
        for _ in range(epochs):
            for a, b in zs.blocks():
                got = read_rows(zs.group, a, b, names)
                got["scales_hat"] = store.scales_to_float(got["scales_hat"])
                got["label"] = got["label"].astype(np.int64)
                n += len(got["key"])
        return n

    return _timed(run)


def _timed(fn):
    import time

    def run():
        t0 = time.perf_counter()
        n = fn()
        return n, time.perf_counter() - t0

    return run


def bench(args, codec, store: Path, count: int) -> None:
    epochs = max(1, math.ceil(args.min_samples / count))
    runs = {
        "public API, stored dtypes": api_run(store, "stored", epochs),
        "public API, float sigma-hat": api_run(store, "float", epochs),
        "zarr-python, float sigma-hat": zarr_python_run(store, max(1, epochs // 4)),
        "loader in-process (0 workers)": loader_run(store, "zarr", 0, epochs * count),
        "re-decode bitstreams": redecode_run(codec, store, args.redecode_samples),
    }
    rates: dict[str, list[float]] = {k: [] for k in runs}
    counts = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            n, seconds = run()[:2]
            rates[name].append(n / seconds)
            counts[name] = n
    med = {k: statistics.median(v) for k, v in rates.items()}
    loader, decode = med["loader in-process (0 workers)"], med["re-decode bitstreams"]
    print(f"{'one thread, one process':<32}{'samples':>8}{'samples/s':>10}{'spread':>8}"
          f"{'vs loader':>10}{'vs re-decode':>13}")  # fmt: skip
    for name, v in rates.items():
        spread = (max(v) - min(v)) / med[name]
        print(
            f"{name:<32}{counts[name]:>8}{med[name]:>10.0f}{spread:>8.0%}"
            f"{med[name] / loader:>9.2f}x{med[name] / decode:>12.1f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=96, help="images encoded into the store")
    ap.add_argument("--size", type=int, default=384, help="image side (384: MINC's 24x24 latents)")
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--min-samples", type=int, default=2000, help="samples per timed run")
    ap.add_argument("--redecode-samples", type=int, default=64)
    ap.add_argument("--codec", choices=["demo", "random"], default="demo")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--store",
        type=Path,
        default=None,
        help="an existing store encoded with --codec (skips encoding)",
    )
    args = ap.parse_args()
    import torch
    from numcodecs import blosc

    torch.set_num_threads(1)
    blosc.use_threads = False
    logging.disable(logging.INFO)
    tmp = Path(tempfile.mkdtemp(prefix="lc-bench-api-"))
    try:
        codec, what = bench_codec(args.codec)
        store = args.store or encode_store(
            codec,
            make_images(tmp / "images", args.images, args.size),
            tmp / "store",
            args.shard_size,
        )
        from latentcache.store import open_store

        info = open_store(store).split_info("train")
        print(
            f"{info['stored']} samples, latents {info['latent_shape']} x M={codec.model.M}, "
            f"{what}; median of {args.repeats}\n"
        )
        bench(args, codec, store, int(info["stored"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

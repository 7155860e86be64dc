"""Encode-side benchmark: throughput, extraction cost and store size, side by side in one run.

    python benchmarks/encode.py [--images 32] [--size 256] [--codec demo|random] [--repeats 3] [--threads 1]
                                [--only speed|sizes]

1. images/s of latentcache's encode (index -> read -> batched g_a -> bytes -> latents -> Zarr +
   WebDataset shards + manifest, in-process) vs a bare loop of stock CompressAI
   ``model.compress`` + latent extraction (entropy_bottleneck.decompress, h_s, build_indexes,
   gaussian_conditional.decompress) on the same decoded images, writing nothing.
2. latent extraction (everything but g_s) vs a full ``model.decompress`` on the same bitstreams,
   for latentcache's vectorized build_indexes and for CompressAI's own steps.
3. stored bytes per sample / bitstream bytes, per layout and scales representation.

Real images: crops of scikit-image's CC0 photos and textures. The codec: the shipped demo codec
when present, else bmshj2018-hyperprior at quality-3 widths (N=128, M=192) with seeded random
weights (same compute, same tensor sizes; rates are then not those of a trained codec).
Timings alternate the contenders and keep the best of ``--repeats`` runs each.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import bench_codec

warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")  # compressai import


def make_images(root: Path, n: int, size: int) -> Path:
    from PIL import Image
    from skimage import data

    sources = [
        data.astronaut(),
        data.coffee(),
        data.chelsea(),
        data.rocket(),
        data.immunohistochemistry(),
    ]
    sources += [np.stack([getattr(data, t)()] * 3, -1) for t in ("brick", "grass", "gravel")]
    rng = np.random.default_rng(0)
    for i in range(n):
        src = sources[i % len(sources)]
        y, x = rng.integers(0, src.shape[0] - size + 1), rng.integers(0, src.shape[1] - size + 1)
        folder = root / f"class{i % len(sources)}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(src[y : y + size, x : x + size, :3])).save(
            folder / f"img{i:04d}.png"
        )
    return root


def bare_loop(model, root: Path) -> float:
    """Stock CompressAI, one image at a time: compress, then extract latents from the bytes."""
    import torch
    from PIL import Image

    from latentcache.codec.latents import pad_image

    t0 = time.perf_counter()
    files = sorted(root.rglob("*.png"))
    with torch.no_grad():
        for f in files:
            x = (
                torch.from_numpy(np.array(Image.open(f).convert("RGB")))
                .permute(2, 0, 1)
                .float()
                .div(255)
            )
            out = model.compress(pad_image(x[None]))
            z_hat = model.entropy_bottleneck.decompress(out["strings"][1], out["shape"])
            scales_hat = model.h_s(z_hat)
            indexes = model.gaussian_conditional.build_indexes(scales_hat)
            model.gaussian_conditional.decompress(out["strings"][0], indexes, z_hat.dtype)
    return len(files) / (time.perf_counter() - t0)


def pipeline(
    codec, root: Path, out: Path, repr_: str = "index", formats=("zarr", "webdataset")
) -> tuple[float, dict]:
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    shutil.rmtree(out, ignore_errors=True)
    config = EncodeConfig(
        dataset="imagefolder",
        data_root=str(root),
        out=str(out),
        workers=0,
        scales_repr=repr_,
        formats=formats,
        shard_size=8,  # several shards, as any real dataset has: writes overlap encoding
    )
    t0 = time.perf_counter()
    result = run_encode(config, codec)
    return result.manifest["totals"]["indexed"] / (time.perf_counter() - t0), result.manifest


def extraction_vs_decompress(model, store_path: Path) -> dict[str, float]:
    import torch

    from latentcache.codec.latents import extract_latents
    from latentcache.store import open_store

    rows = open_store(store_path).zarr_split("train").read(0, 10**9, bitstreams=True)
    items = list(zip(rows["y_string"], rows["z_string"], rows["z_shape"], strict=True))

    def ours():
        for y, z, shape in items:
            extract_latents(model, [y], [z], tuple(shape))

    def stock_steps():
        with torch.no_grad():
            for y, z, shape in items:
                z_hat = model.entropy_bottleneck.decompress([z], tuple(shape))
                idx = model.gaussian_conditional.build_indexes(model.h_s(z_hat))
                model.gaussian_conditional.decompress([y], idx, z_hat.dtype)

    def full():
        with torch.no_grad():
            for y, z, shape in items:
                model.decompress([[y], [z]], tuple(shape))

    return {
        name: _best(fn) for name, fn in (("ours", ours), ("stock", stock_steps), ("full", full))
    }


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _array_bytes(store: Path, names) -> int:
    return sum(
        f.stat().st_size
        for n in names
        for f in (store / "zarr" / "train" / n / "c").rglob("*")
        if f.is_file()
    )


def sizes(codec, root: Path, tmp: Path) -> list[tuple[str, str, float, float]]:
    """(layout, repr, latents-only ratio, whole-sample ratio) to the bitstream bytes."""
    rows = []
    meta = [
        "label",
        "bpp",
        "bpp_estimate",
        "key",
        "source_sha256",
        "image_size",
        "latent_shape",
        "z_shape",
    ]
    for repr_ in ("index", "float16", "float32", "z_hat"):
        _, m = pipeline(codec, root, tmp / repr_, repr_)
        bits = m["totals"]["bitstream_bytes"]
        scales = "z_hat" if repr_ == "z_hat" else "scales_hat"
        lat = _array_bytes(tmp / repr_, ["y_hat", scales])
        rows.append(("zarr", repr_, lat / bits, m["totals"]["bytes"]["zarr"] / bits))
        whole = _array_bytes(tmp / repr_, ["y_hat", scales, *meta])
        rows.append(("zarr, no bitstream copy", repr_, lat / bits, whole / bits))
        rows.append(("webdataset", repr_, float("nan"), m["totals"]["bytes"]["webdataset"] / bits))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--codec", choices=["demo", "random"], default="demo")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)"
    )
    ap.add_argument("--only", choices=["speed", "sizes"], help="run one part (default: both)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="lc-bench-"))
    try:
        root = make_images(tmp / "images", args.images, args.size)
        codec, what = bench_codec(args.codec)
        print(
            f"{args.images} images {args.size}x{args.size}, {what}, torch threads {torch.get_num_threads()}\n"
        )
        if args.only != "sizes":
            speed(codec, root, tmp, args.repeats)
        if args.only != "speed":
            print_sizes(codec, root, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def speed(codec, root: Path, tmp: Path, repeats: int) -> None:
    ours, bare = [], []
    for _ in range(repeats):  # alternate to share the machine's noise
        rate, manifest = pipeline(codec, root, tmp / "store")
        ours.append(rate)
        bare.append(bare_loop(codec.model, root))
    print(f"mean true bpp {manifest['splits']['train']['bpp_mean']:.3f}\n")
    print("| encode | images/s (best) |\n|---|---|")
    print(f"| latentcache encode (both layouts written) | {max(ours):.2f} |")
    print(f"| bare CompressAI compress + extraction | {max(bare):.2f} |")
    print(f"| ratio | **{max(ours) / max(bare):.2f}x** |\n")
    t = extraction_vs_decompress(codec.model, tmp / "store")
    print("| latents from bytes | seconds | / full decompress |\n|---|---|---|")
    print(f"| full decompress (with g_s) | {t['full']:.3f} | 1.00 |")
    print(f"| CompressAI's own steps (no g_s) | {t['stock']:.3f} | {t['stock'] / t['full']:.3f} |")
    print(f"| latentcache extract_latents | {t['ours']:.3f} | **{t['ours'] / t['full']:.3f}** |\n")


def print_sizes(codec, root: Path, tmp: Path) -> None:
    print("| layout | scales repr | latents / bitstream | stored / bitstream |\n|---|---|---|---|")
    for layout, repr_, lat, whole in sizes(codec, root, tmp):
        lat_s = "-" if np.isnan(lat) else f"{lat:.2f}x"
        print(f"| {layout} | {repr_} | {lat_s} | {whole:.2f}x |")


if __name__ == "__main__":
    main()

"""Which Zarr v3 spec codecs store ``y_hat`` and the uint8 scale index smallest, and how fast.

    python benchmarks/zarr_codecs.py [--images 32] [--size 256] [--codec demo|random] [--repeats 3]

Real latents (the demo codec on crops of scikit-image's CC0 photos, as benchmarks/encode.py
makes them), one chunk per sample as the store writes them. Candidates are chains of spec
codecs only (transpose, blosc, zstd, gzip), run through numcodecs, which implements the same
byte formats. Prints bytes over the bitstream bytes and encode / decode ms per sample.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import bench_codec
from encode import make_images


def latents(codec, root: Path) -> tuple[list, list, int]:
    """(y_hat arrays, scale-index arrays, bitstream bytes) of every image under ``root``."""
    import torch
    from PIL import Image

    from latentcache.codec.latents import encode_batch, pad_image

    ys, idx, bits = [], [], 0
    for f in sorted(root.rglob("*.png")):
        a = np.array(Image.open(f).convert("RGB"))
        x = pad_image(torch.from_numpy(a).permute(2, 0, 1).float().div(255)[None])
        (lat,) = encode_batch(codec.model, x, [a.shape[:2]])
        ys.append(lat.y_hat)
        idx.append(lat.scale_index)
        bits += len(lat.y_string) + len(lat.z_string)
    return ys, idx, bits


def candidates(dtype_size: int) -> dict:
    """name -> (transpose order or None, numcodecs compressor)."""
    from numcodecs import GZip, Zstd
    from numcodecs.blosc import BITSHUFFLE, NOSHUFFLE, SHUFFLE, Blosc

    out = {}
    shuffles = {"noshuffle": NOSHUFFLE, "shuffle": SHUFFLE, "bitshuffle": BITSHUFFLE}
    orders = (("", None), ("swap h,w ", (0, 2, 1)), ("channels last ", (1, 2, 0)))
    for order_name, order in orders:
        for sname, sh in shuffles.items():
            if dtype_size == 1 and sname == "shuffle":
                continue  # byte shuffle of 1-byte items is a copy
            for level in (5, 8):
                out[f"{order_name}blosc zstd {level} {sname}"] = (order, Blosc("zstd", level, sh))
        for cname, level in (("lz4", 5), ("lz4hc", 5), ("lz4hc", 9)):
            out[f"{order_name}blosc {cname} {level} bitshuffle"] = (
                order,
                Blosc(cname, level, BITSHUFFLE),
            )
        for level in (3, 9, 19):
            out[f"{order_name}zstd {level}"] = (order, Zstd(level=level))
        out[f"{order_name}gzip 9"] = (order, GZip(9))
    return out


def measure(arrays: list[np.ndarray], order, comp, repeats: int) -> tuple[int, float, float]:
    """Bytes, encode and decode ms per sample (best of ``repeats``; one thread, as a loader
    worker decodes)."""
    enc_t, dec_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        blobs = [
            comp.encode(np.ascontiguousarray(a.transpose(order) if order else a)) for a in arrays
        ]
        t1 = time.perf_counter()
        for b in blobs:
            comp.decode(b)
        dec_t.append(time.perf_counter() - t1)
        enc_t.append(t1 - t0)
    n = len(arrays)
    return sum(len(b) for b in blobs), 1e3 * min(enc_t) / n, 1e3 * min(dec_t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--codec", choices=["demo", "random"], default="demo")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from numcodecs import blosc

    blosc.use_threads = False  # one core per sample, as in a DataLoader worker
    with tempfile.TemporaryDirectory(prefix="lc-codecs-") as tmp:
        root = make_images(Path(tmp) / "images", args.images, args.size)
        codec, what = bench_codec(args.codec)
        ys, idx, bits = latents(codec, root)
    print(f"{args.images} images {args.size}x{args.size}, {what}, bitstream bytes {bits}\n")
    for name, arrays in (("scale index (uint8)", idx), ("y_hat (int16)", ys)):
        print(f"| {name} codecs | / bitstream | encode ms | decode ms |\n|---|---|---|---|")
        rows = [
            (cname, *measure(arrays, order, comp, args.repeats))
            for cname, (order, comp) in candidates(arrays[0].dtype.itemsize).items()
        ]
        for cname, nbytes, enc, dec in sorted(rows, key=lambda r: r[1]):
            print(f"| {cname} | {nbytes / bits:.2f}x | {enc:.2f} | {dec:.2f} |")
        print()


if __name__ == "__main__":
    main()

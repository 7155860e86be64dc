"""Every CompressAI image architecture: reading a store against re-decoding each epoch.

For each zoo architecture, on the same images in one run: a MINC-size store (384x384 crops
of scikit-image's CC0 photos -> 24x24 latents) is encoded once; then one epoch is timed
both ways:

- **store**: every sample's latents read from the Zarr layout (``ZarrSplit`` blocks: y_hat,
  scales_hat, means_hat as float32 where the codec has them), best of 20 epochs;
- **re-decode**: stock CompressAI ``model.decompress(strings, shape)`` of every stored
  bitstream (what a pipeline without the cache runs every epoch; autoregressive codecs decode
  serially, one latent position at a time).

Models: CompressAI's own classes at the zoo's quality-1 widths (``compressai.zoo``), random
weights + ``update(force=True)`` (no weights can be downloaded here): the decode cost is the
architecture's, the bit rates are not a trained codec's. One torch thread, CPU.

    python benchmarks/codec_zoo.py [--images 4] [--archs a,b]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARCHS = (
    "bmshj2018-factorized",
    "bmshj2018-hyperprior",
    "mbt2018-mean",
    "mbt2018",
    "cheng2020-anchor",
    "cheng2020-attn",
)
CROP = 384  # MINC-2500's images: 384x384 -> 24x24 latents
READ_EPOCHS = 20  # store reads: best of (re-decoding: one epoch, it takes seconds per image)


def write_images(root: Path, count: int) -> Path:
    from PIL import Image
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.rocket(), data.immunohistochemistry()]
    for i in range(count):
        img = photos[i % len(photos)]
        y, x = (i // len(photos)) * 8, (i // len(photos)) * 8
        (root / "photos").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[y : y + CROP, x : x + CROP]).save(root / "photos" / f"{i}.png")
    return root


def make_model(arch: str):
    from compressai.zoo.image import model_architectures

    from latentcache.codec.spec import architectures

    torch.manual_seed(0)
    n, m = architectures()[arch][1]
    cls = model_architectures[arch]
    model = cls(n) if arch.startswith("cheng2020") else cls(n, m)
    last = [mod for mod in model.g_a if hasattr(mod, "weight")][-1]
    with torch.no_grad():  # latents spread like a trained codec's (not all zero)
        last.weight.mul_(20.0)
        last.bias.mul_(20.0)
    model.update(force=True)
    return model.eval()


def run_arch(arch: str, data_root: Path, work: Path) -> dict:
    from latentcache.codec.load import codec_from_model
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode
    from latentcache.store import open_store

    model = make_model(arch)
    out = work / arch
    t0 = time.perf_counter()
    run_encode(
        EncodeConfig(
            dataset="imagefolder", data_root=str(data_root), out=str(out), workers=0,
            formats=("zarr",), shard_size=64,
        ),
        codec_from_model(model),
    )  # fmt: skip
    encode_s = time.perf_counter() - t0
    store = open_store(out)
    split = store.splits[0]
    zs = store.zarr_split(split)
    read_s, n = float("inf"), 0
    for _ in range(READ_EPOCHS):
        t0 = time.perf_counter()
        n = sum(len(zs.read(a, b)["key"]) for a, b in zs.blocks())
        read_s = min(read_s, time.perf_counter() - t0)
    rows = {k: v for a, b in zs.blocks() for k, v in zs.read(a, b, bitstreams=True).items()}
    kind = store.manifest["latents"]["kind"]
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(n):
            strings = [[rows["y_string"][i]]]
            if kind != "factorized":
                strings.append([rows["z_string"][i]])
            model.decompress(strings, tuple(int(v) for v in rows["z_shape"][i]))
    decode_s = time.perf_counter() - t0
    t = store.manifest["totals"]
    return {
        "arch": arch,
        "n": n,
        "encode_s": encode_s,
        "read_sps": n / read_s,
        "decode_sps": n / decode_s,
        "ratio": decode_s / read_s,
        "store_b": t["bytes"]["zarr"] / n,
        "bits_b": t["bitstream_bytes"] / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--archs", default=",".join(ARCHS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import logging

    logging.disable(logging.INFO)
    print(
        f"# {args.images} images of {CROP}x{CROP} (24x24 latents), zoo quality-1 widths, 1 thread"
    )
    print(
        f"{'architecture':<22} {'store read/s':>12} {'re-decode/s':>12} {'ratio':>9} "
        f"{'store B/sample':>15} {'bitstream B':>12} {'x bitstream':>11} {'encode s/img':>12}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data_root = write_images(Path(tmp) / "data", args.images)
        for arch in args.archs.split(","):
            r = run_arch(arch, data_root, Path(tmp) / "stores")
            print(
                f"{r['arch']:<22} {r['read_sps']:>12.1f} {r['decode_sps']:>12.2f} "
                f"{r['ratio']:>9.0f} {r['store_b']:>15.0f} {r['bits_b']:>12.0f} "
                f"{r['store_b'] / max(r['bits_b'], 1):>11.2f} {r['encode_s'] / r['n']:>12.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

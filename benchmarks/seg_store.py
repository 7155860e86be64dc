"""Segmentation stores: what the masks cost, on disk and in the loader, side by side in one run.

    python benchmarks/seg_store.py [--images 96] [--size 375 500] [--min-samples 2000]
        [--repeats 9] [--workers 0 2] [--codec demo|random] [--shard-size 32]

The same images (VOC-sized crops of scikit-image's CC0 photos) are encoded twice with the
same codec: as a classification store (``imagefolder``, one label per image) and as a
segmentation store (``segfolder``, a VOC-like mask per image: a few ellipses of classes 1..20
on background 0, each with VOC's 255 outline band).

1. Bytes per sample: the masks (Zarr ``mask`` array files, WebDataset ``.mask.png`` and
   ``.mask.npy.zst`` members) against the latents of the same layout (``y_hat`` +
   ``scales_hat``) and the bitstreams.
2. Loader samples/s, batches of 64 in the stored dtypes (masks on the codec canvas), Zarr and
   WebDataset with 0 and 2 worker processes: the segmentation store against the
   classification store, each contender once per round (load drift hits both alike): each
   one's median and spread ((max - min) / median) over --repeats, and the ratio as the median
   of the rounds' ratios (segmentation ÷ the classification run just before it), with their
   range. Goal: segmentation >= 0.8x.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import statistics
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import bench_codec

warnings.filterwarnings("ignore")

BATCH = 64


def _photos(h: int, w: int) -> list[np.ndarray]:
    from PIL import Image
    from skimage import data

    out = []
    for src in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket()):
        src = np.ascontiguousarray(src[..., :3])
        scale = max(h / src.shape[0], w / src.shape[1], 1.0)
        if scale > 1:
            size = (math.ceil(src.shape[1] * scale), math.ceil(src.shape[0] * scale))
            src = np.asarray(Image.fromarray(src).resize(size, Image.BICUBIC))
        out.append(src)
    return out


def voc_like_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Background 0, one to three ellipses of classes 1..20, a 255 band on every boundary."""
    mask = np.zeros((h, w), dtype=np.uint8)
    y, x = np.ogrid[:h, :w]
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ry, rx = rng.integers(h // 8, h // 2), rng.integers(w // 8, w // 2)
        mask[((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1] = rng.integers(1, 21)
    edge = np.zeros_like(mask, dtype=bool)
    for axis in (0, 1):
        diff = np.diff(mask.astype(np.int16), axis=axis) != 0
        pad = [(0, 0), (0, 0)]
        pad[axis] = (1, 0)
        edge |= np.pad(diff, pad)
        pad[axis] = (0, 1)
        edge |= np.pad(diff, pad)
    for _ in range(2):  # VOC's outlines are about 5 pixels wide
        edge[1:] |= edge[:-1].copy()
        edge[:, 1:] |= edge[:, :-1].copy()
    return np.where(edge, 255, mask).astype(np.uint8)


def make_datasets(root: Path, n: int, h: int, w: int) -> tuple[Path, Path]:
    """The same ``n`` images as an image folder (4 classes) and a segmentation folder."""
    from PIL import Image

    from latentcache.datasets.masks import write_palette_mask

    rng = np.random.default_rng(0)
    photos = _photos(h, w)
    cls_root, seg_root = root / "cls", root / "seg"
    (seg_root / "train" / "images").mkdir(parents=True)
    (seg_root / "train" / "masks").mkdir(parents=True)
    (seg_root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(21)))
    for i in range(n):
        src = photos[i % len(photos)]
        y0, x0 = rng.integers(0, src.shape[0] - h + 1), rng.integers(0, src.shape[1] - w + 1)
        image = seg_root / "train" / "images" / f"img{i:04d}.jpg"
        Image.fromarray(src[y0 : y0 + h, x0 : x0 + w]).save(image, quality=90)
        write_palette_mask(
            seg_root / "train" / "masks" / f"img{i:04d}.png", voc_like_mask(rng, h, w)
        )
        folder = cls_root / f"class{i % len(photos)}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, folder / image.name)
    return cls_root, seg_root


def encode(codec, dataset: str, root: Path, out: Path, shard_size: int) -> Path:
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    config = EncodeConfig(
        dataset=dataset, data_root=str(root), out=str(out), workers=0, shard_size=shard_size
    )
    run_encode(config, codec)
    return out


# ------------------------------------------------------------- 1. bytes


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _wds_member_bytes(store: Path, suffix: str) -> int:
    total = 0
    for tar in sorted((store / "wds").rglob("*.tar")):
        with tarfile.open(tar) as f:
            total += sum(m.size for m in f.getmembers() if m.name.endswith(suffix))
    return total


def bench_bytes(seg: Path, n: int, hw: tuple[int, int]) -> None:
    from latentcache.store import open_store

    zarr = seg / "zarr" / "train"
    latents = {
        "Zarr": _dir_bytes(zarr / "y_hat") + _dir_bytes(zarr / "scales_hat"),
        "WebDataset": _wds_member_bytes(seg, ".y_hat.npy.zst")
        + _wds_member_bytes(seg, ".scales_hat.npy.zst"),
    }
    png, npy = _wds_member_bytes(seg, ".mask.png"), _wds_member_bytes(seg, ".mask.npy.zst")
    masks = {"Zarr": _dir_bytes(zarr / "mask"), "WebDataset": png + npy}
    bitstreams = int(open_store(seg).split_info("train")["bitstream_bytes"])
    pixels = hw[0] * hw[1]
    print(f"bytes per sample, {n} images {hw[0]}x{hw[1]} ({pixels} mask bytes raw)")
    print(f"{'layout':<12}{'mask':>8}{'latents':>10}{'mask/latents':>14}{'mask bits/px':>14}")
    for layout in ("Zarr", "WebDataset"):
        m, lat = masks[layout] / n, latents[layout] / n
        print(f"{layout:<12}{m:>8.0f}{lat:>10.0f}{m / lat:>14.1%}{8 * m / pixels:>14.4f}")
    print(
        f"{'':<12}WebDataset: .mask.png {png / n:.0f} B (plain webdataset's), .mask.npy.zst "
        f"{npy / n:.0f} B (the loader's)"
    )
    print(
        f"{'bitstreams':<12}{'':>8}{bitstreams / n:>10.0f}   (y and z strings; mask/bitstreams "
        f"{masks['Zarr'] / bitstreams:.1%} Zarr)"
    )


# ------------------------------------------------------------- 2. the loader


def loader_run(store: Path, fmt: str, workers: int, samples: int):
    from latentcache.train.data import StreamSpec, build_loader

    spec = StreamSpec(
        store=str(store), split="train", fmt=fmt, shuffle=True, batch_size=BATCH,
        batches_per_rank=-(-samples // BATCH),
    )  # fmt: skip
    loader = build_loader(spec, workers=workers, recycle=True)
    loader.dataset.set_epoch(0)
    for _ in loader:  # starts the (persistent) workers
        pass

    def run() -> float:
        loader.dataset.set_epoch(1)
        t0, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch["y_hat"]) if "y_hat" in batch else len(next(iter(batch.values())))
        return n / (time.perf_counter() - t0)

    return run


def bench_loaders(args, cls: Path, seg: Path, n: int) -> None:
    samples = max(args.min_samples, n)
    runs = {}
    for fmt in ("zarr", "webdataset"):
        for w in args.workers:
            for kind, store in (("classification", cls), ("segmentation", seg)):
                runs[(fmt, w, kind)] = loader_run(store, fmt, w, samples)
    rates: dict[tuple, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for key, run in runs.items():
            rates[key].append(run())
    print(f"\n{'loader, batch 64':<28}{'classification':>16}{'spread':>8}"
          f"{'segmentation':>14}{'spread':>8}{'ratio':>8}{'per round':>14}")  # fmt: skip
    for fmt in ("zarr", "webdataset"):
        for w in args.workers:
            c, s = rates[(fmt, w, "classification")], rates[(fmt, w, "segmentation")]
            mc, ms = statistics.median(c), statistics.median(s)
            rounds = [b / a for a, b in zip(c, s, strict=True)]  # the two ran back to back
            print(
                f"{fmt + f', {w} workers':<28}{mc:>16.0f}{(max(c) - min(c)) / mc:>8.0%}"
                f"{ms:>14.0f}{(max(s) - min(s)) / ms:>8.0%}{statistics.median(rounds):>7.2f}x"
                f"{min(rounds):>7.2f}-{max(rounds):.2f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--size", type=int, nargs=2, default=[375, 500], metavar=("H", "W"))
    ap.add_argument("--shard-size", type=int, default=32)
    ap.add_argument("--min-samples", type=int, default=2000, help="samples per loader run")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--codec", choices=["demo", "random"], default="demo")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from numcodecs import blosc

    blosc.use_threads = False
    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="lc-bench-seg-"))
    try:
        h, w = args.size
        cls_root, seg_root = make_datasets(tmp / "data", args.images, h, w)
        codec, what = bench_codec(args.codec)
        cls = encode(codec, "imagefolder", cls_root, tmp / "cls-store", args.shard_size)
        seg = encode(codec, "segfolder", seg_root, tmp / "seg-store", args.shard_size)
        print(f"{args.images} images {h}x{w}, {what}; median of {args.repeats}\n")
        bench_bytes(seg, args.images, (h, w))
        bench_loaders(args, cls, seg, args.images)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

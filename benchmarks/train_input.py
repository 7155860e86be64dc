"""Training-side benchmark: what streaming stored latents saves, side by side in one run.

    python benchmarks/train_input.py [--images 64] [--size 256] [--train-samples 32]
                                     [--batch-size 8] [--codec demo|random] [--repeats 2] [--threads 1]

1. Input pipeline, samples/s delivered as training batches (shuffled, collated tensors):
   latentcache's loader from Zarr and from WebDataset, vs re-decoding every bitstream each
   epoch as the reference implementation does (stock CompressAI: entropy-decode z, h_s,
   build_indexes, entropy-decode y; never g_s). Goal: >= 30x.
2. One training epoch, end to end on this CPU: cresnet39 on latents (loader + latent
   augmentation: resize 32, crop 28, flip as in gupta2024; and at the latents' own size)
   vs ResNet-50 on the same images stored as 224x224 JPEG (PIL decode, flip, normalize).
   Goal: >= 2x faster on latents. (At 28x28, cResNet-39 costs 2.95 vs ResNet-50's 3.86
   GFLOPs, Torfason Table 1: compute alone gives ~1.3x.)

Real images: crops of scikit-image's CC0 photos and textures. The codec: the shipped demo
codec when present, else bmshj2018-hyperprior at quality-3 widths (N=128, M=192) with seeded
random weights (same compute and tensor sizes as the zoo codec). Best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import bench_codec

warnings.filterwarnings("ignore")


def make_images(root: Path, n: int, size: int) -> Path:
    """``n`` RGB crops in class folders (one per source image)."""
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


def encode_store(codec, root: Path, out: Path) -> Path:
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    config = EncodeConfig(
        dataset="imagefolder", data_root=str(root), out=str(out), workers=0, shard_size=64
    )
    run_encode(config, codec)
    return out


def _best(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


# ------------------------------------------------------------- 1. the input pipeline


def loader_epoch(store_path: Path, fmt: str, batch_size: int) -> int:
    from latentcache.store import open_store
    from latentcache.train.data import StreamSpec, batches_per_rank, build_loader, split_count

    count = split_count(open_store(store_path).split_info("train"))
    spec = StreamSpec(
        store=str(store_path), split="train", fmt=fmt, shuffle=True, batch_size=batch_size,
        batches_per_rank=batches_per_rank(count, 1, batch_size),
    )  # fmt: skip
    return sum(len(b["label"]) for b in build_loader(spec))


def redecode_epoch(codec, store_path: Path, batch_size: int) -> int:
    """The reference implementation: bytes -> y_hat, scales_hat for every sample, every epoch."""
    import torch

    from latentcache.store import open_store

    model = codec.model
    zs = open_store(store_path).zarr_split("train")
    seen = 0
    with torch.no_grad():
        for a, b in zs.blocks():
            rows = zs.read(a, b, bitstreams=True)
            batch = []
            for y, z, shape in zip(
                rows["y_string"], rows["z_string"], rows["z_shape"], strict=True
            ):
                z_hat = model.entropy_bottleneck.decompress([z], tuple(int(v) for v in shape))
                scales_hat = model.h_s(z_hat)
                idx = model.gaussian_conditional.build_indexes(scales_hat)
                y_hat = model.gaussian_conditional.decompress([y], idx, z_hat.dtype)
                batch.append((y_hat, scales_hat))
                if len(batch) == batch_size:
                    seen += len(torch.cat([t[0] for t in batch]))
                    batch = []
            seen += len(batch)
    return seen


# ------------------------------------------------------------- 2. one training epoch


def latent_epoch(store_path: Path, batch_size: int, samples: int, native: bool = False) -> int:
    import torch

    from latentcache.store import open_store
    from latentcache.train.augment import AugmentConfig, LatentStats, LatentTransform
    from latentcache.train.data import StreamSpec, build_loader
    from latentcache.train.loop import make_prepare, train_one_epoch
    from latentcache.train.models import create_classifier

    store = open_store(store_path)
    torch.manual_seed(0)
    model = create_classifier("cresnet39", store.num_channels, len(store.classes))
    stats = LatentStats.from_dict(store.split_info("train")["stats"])
    prepare = make_prepare(
        LatentTransform(model.inputs, stats, AugmentConfig()), torch.device("cpu"), False
    )
    spec = StreamSpec(
        store=str(store_path), split="train", fields=model.inputs, shuffle=True, batch_size=batch_size,
        batches_per_rank=samples // batch_size,
    )  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    out = train_one_epoch(
        model, build_loader(spec), prepare, opt, generator=torch.Generator().manual_seed(0)
    )
    return out["train_samples"]


def write_jpegs(root: Path, out: Path) -> list[tuple[Path, int]]:
    from PIL import Image

    files = []
    for png in sorted(root.rglob("*.png")):
        dst = out / png.parent.name / (png.stem + ".jpg")
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.open(png).convert("RGB").resize((224, 224), Image.BILINEAR).save(dst, quality=90)
        files.append((dst, int(png.parent.name.removeprefix("class"))))
    return files


class JpegDataset:
    """ImageNet-style pixel input: JPEG decode, random flip, normalize."""

    def __init__(self, files: list[tuple[Path, int]]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        import torch
        from PIL import Image

        path, label = self.files[i]
        x = torch.from_numpy(
            np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
        ).permute(2, 0, 1)
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        return (x - mean[:, None, None]) / std[:, None, None], label


def pixel_epoch(files: list[tuple[Path, int]], batch_size: int, samples: int, classes: int) -> int:
    import torch
    from torch.utils.data import DataLoader

    from latentcache.train.loop import train_one_epoch
    from latentcache.train.models import create_classifier

    torch.manual_seed(0)
    model = create_classifier("resnet50", 3, classes, pretrained=False)
    loader = DataLoader(
        JpegDataset(files[:samples]), batch_size=batch_size, shuffle=True, drop_last=True
    )
    batches = ({"image": x, "label": y} for x, y in loader)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def prepare(batch, train, generator):
        return [batch["image"]], batch["label"]

    return train_one_epoch(model, batches, prepare, opt)["train_samples"]


# ------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--images", type=int, default=64, help="images encoded into the store (train split)"
    )
    ap.add_argument(
        "--size", type=int, default=256, help="image side (256: RESISC-45's 16x16 latents)"
    )
    ap.add_argument(
        "--train-samples", type=int, default=32, help="samples in the timed training epochs"
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--codec", choices=["demo", "random"], default="demo")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)"
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    logging.disable(logging.INFO)
    tmp = Path(tempfile.mkdtemp(prefix="lc-bench-train-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path) -> None:
    import torch

    root = make_images(tmp / "images", args.images, args.size)
    codec, what = bench_codec(args.codec)
    store = encode_store(codec, root, tmp / "store")
    from latentcache.store import open_store

    info = open_store(store).split_info("train")
    print(
        f"{info['stored']} images {args.size}x{args.size} -> latents {info['latent_shape']} x M={codec.model.M}, "
        f"{what}, torch threads {torch.get_num_threads()}, best of {args.repeats}\n"
    )
    rows = []
    for name, fn in (
        ("loader, Zarr", lambda: loader_epoch(store, "zarr", args.batch_size)),
        ("loader, WebDataset", lambda: loader_epoch(store, "webdataset", args.batch_size)),
        ("re-decode bitstreams", lambda: redecode_epoch(codec, store, args.batch_size)),
    ):
        seconds, n = _best(fn, args.repeats)
        rows.append((name, n, seconds, n / seconds))
    decode_rate = rows[-1][3]
    print(
        f"{'input pipeline':<24}{'samples':>9}{'seconds':>10}{'samples/s':>12}{'vs re-decode':>14}"
    )
    for name, n, s, rate in rows:
        print(f"{name:<24}{n:>9}{s:>10.3f}{rate:>12.0f}{rate / decode_rate:>13.1f}x")
    files = write_jpegs(root, tmp / "jpeg")
    n = min(args.train_samples, info["stored"]) // args.batch_size * args.batch_size
    classes = len(open_store(store).classes)
    epochs = [
        ("cresnet39, crop 28", lambda: latent_epoch(store, args.batch_size, n)),
        ("cresnet39, native size", lambda: latent_epoch(store, args.batch_size, n, native=True)),
        ("ResNet-50 on JPEG 224", lambda: pixel_epoch(files, args.batch_size, n, classes)),
    ]
    timed = [(name, *_best(fn, args.repeats)) for name, fn in epochs]
    print(
        f"\n{'one training epoch':<24}{'samples':>9}{'seconds':>10}{'samples/s':>12}{'speed-up':>14}"
    )
    slowest = timed[-1][1]
    for name, s, count in timed:
        print(f"{name:<24}{count:>9}{s:>10.2f}{count / s:>12.1f}{slowest / s:>13.2f}x")


if __name__ == "__main__":
    main()

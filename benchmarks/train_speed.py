"""Training speed, the costs apart: compute only, input path only, end to end, in one run.

    python benchmarks/train_speed.py [--device auto|cpu|cuda] [--batches ...] [--steps N]
        [--warmup N] [--speed-workers N] [--images 256] [--size 384] [--compile MODE]
        [--models cresnet39-28 cresnet39-24 cresnet39-dual cresnet51 resnet50] [--json FILE]

(``train_input.py --gpu`` runs this on CUDA.) For each model and batch size:

- compute only: the training step (forward, backward, SGD) on one synthetic, already
  augmented batch that stays on the device;
- input path only: the loader (Zarr, shuffled, worker processes, recycled buffers) ─► the
  device (pinned ring + copy stream on CUDA) ─► augmentation on the device; no model.
  ResNet-50: JPEG bytes from workers ─► torchvision.io.decode_jpeg on the device ─► flip,
  normalize;
- end to end: both, streaming; and for the latents again with the split held in device
  memory (--cache device; host memory on the CPU). "wait": the share of the timed wall
  time the loop spent blocked on the next batch (fetch, staging, copy enqueue).

GMACs: torch's FLOP counter on one forward pass at the size the model sees, per sample.
Models: cResNet-39 on resize 32 + crop 28 and at native 24x24 (+ flip), the dual-stem
cResNet-39 (y_hat and σ̂, crop 28), cResNet-51 (crop 28), ResNet-50 on 224² JPEGs.
CUDA: bfloat16 autocast, channels_last, cudnn.benchmark, fused SGD. Defaults are sized for
the device: batches 64 128 256, 30 timed steps, 8 workers on CUDA; on the CPU batches 4 8,
2 steps, loading in the main process (spawning workers costs more than these runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from _common import bench_codec
from _speed_runs import (
    compute_run,
    count_gmacs,
    end_to_end_run,
    input_run,
    jpeg_contender,
    latent_contender,
)

warnings.filterwarnings("ignore")

MODELS = ("cresnet39-28", "cresnet39-24", "cresnet39-dual", "cresnet51", "resnet50")
CPU_DEFAULTS = {"batches": [4, 8], "steps": 2, "warmup": 1, "images": 64, "workers": 0}
CUDA_DEFAULTS = {"batches": [64, 128, 256], "steps": 30, "warmup": 10, "images": 256, "workers": 8}


def build_contenders(names, store, files, workers: int, device, compile_mode: str) -> list:
    import torch

    from latentcache.store import open_store
    from latentcache.train.augment import AugmentConfig
    from latentcache.train.models import create_classifier
    from latentcache.train.speed import compile_model

    st = open_store(store)
    m, classes = st.num_channels, len(st.classes)
    crop, native = AugmentConfig(), AugmentConfig(resize=None, crop=None)
    hw = tuple(st.split_info("train")["latent_shape"])
    plan = {
        "cresnet39-28": ("cResNet-39, crop 28", "cresnet39", crop),
        "cresnet39-24": (f"cResNet-39, native {hw[0]}", "cresnet39", native),
        "cresnet39-dual": ("cResNet-39 dual-stem, crop 28", "cresnet39-dual", crop),
        "cresnet51": ("cResNet-51, crop 28", "cresnet51", crop),
    }
    out = []
    for key in names:
        torch.manual_seed(0)
        if key == "resnet50":
            model = _placed(create_classifier("resnet50", 3, classes, pretrained=False), device)
            title = "ResNet-50, JPEG 224" + (" (GPU decode)" if device.type == "cuda" else "")
            c = jpeg_contender(title, model, files, workers, device)
        else:
            title, name, augment = plan[key]
            kw = {"pretrained": False} if name.endswith("-dual") else {}
            model = _placed(create_classifier(name, m, classes, **kw), device)
            c = latent_contender(title, model, store, augment, workers, device)
        c.gmacs = count_gmacs(c.model, c.input_shapes)
        c.model = compile_model(c.model, compile_mode)
        out.append(c)
    return out


def _placed(model, device):
    import torch

    inputs = model.inputs
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model.inputs = inputs
    return model


def measure(contenders, batches, steps: int, warmup: int, device) -> list[dict]:
    rows = []
    for c in contenders:
        for b in batches:
            row = {"model": c.name, "batch": b, "gmacs": c.gmacs}
            row["compute"] = compute_run(c, b, steps, warmup, device)
            row["input"] = input_run(c, b, steps, warmup, device, "off")
            row["stream"] = end_to_end_run(c, b, steps, warmup, device, "off")
            if c.cacheable:
                row["cached"] = end_to_end_run(c, b, steps, warmup, device, "device")
            rows.append(row)
            print(_line(row), flush=True)
    return rows


HEADER = (
    f"{'model':<31}{'batch':>6}{'GMACs':>7}{'compute':>10}{'input':>10}"
    f"{'e2e stream':>12}{'wait':>6}{'e2e cached':>12}{'wait':>6}"
)


def _line(r: dict) -> str:
    cached = r.get("cached")
    tail = f"{cached['samples_per_s']:>12.1f}{cached['wait_share']:>6.0%}" if cached else " " * 18
    return (
        f"{r['model']:<31}{r['batch']:>6}{r['gmacs']:>7.2f}{r['compute']['samples_per_s']:>10.1f}"
        f"{r['input']['samples_per_s']:>10.1f}{r['stream']['samples_per_s']:>12.1f}"
        f"{r['stream']['wait_share']:>6.0%}{tail}"
    )


def ratios(rows: list[dict]) -> list[str]:
    """Each latent model against ResNet-50 at the same batch size, end to end (best of
    streaming and cached) and compute only."""
    base = {r["batch"]: r for r in rows if r["model"].startswith("ResNet-50")}
    out = []
    for r in rows:
        b = base.get(r["batch"])
        if b is None or r is b:
            continue
        e2e = max(r["stream"]["samples_per_s"], r.get("cached", r["stream"])["samples_per_s"])
        out.append(
            f"{r['model']:<31}{r['batch']:>6}  end to end {e2e / b['stream']['samples_per_s']:.2f}x"
            f"  compute {r['compute']['samples_per_s'] / b['compute']['samples_per_s']:.2f}x"
            f"  (GMACs allow {b['gmacs'] / r['gmacs']:.2f}x)"
        )
    return out


def run_speed(store: Path, images: Path, tmp: Path, args) -> list[dict]:
    import torch
    from _train_steps import write_jpegs

    from latentcache.train.distributed import resolve_device

    device = resolve_device(args.device)
    defaults = CUDA_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    batches = args.batches or defaults["batches"]
    steps, warmup = args.steps or defaults["steps"], args.warmup or defaults["warmup"]
    workers = args.speed_workers
    if workers is None:  # CUDA: up to 8 workers, a core left for the main process
        workers = min(defaults["workers"], max(0, (os.cpu_count() or 2) - 1))
    torch.backends.cudnn.benchmark = True
    files = write_jpegs(images, tmp / "jpeg")
    contenders = build_contenders(args.models, store, files, workers, device, args.compile)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{where}, {workers} loader workers, {steps} timed steps after {warmup}, "
        f"compile {args.compile}; samples/s\n{HEADER}"
    )
    rows = measure(contenders, batches, steps, warmup, device)
    print("\nagainst ResNet-50 at the same batch size:")
    print("\n".join(ratios(rows)))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": where, "rows": rows}, indent=1))
    return rows


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="[64 128 256; CPU 4 8]")
    ap.add_argument("--steps", type=int, default=None, help="timed steps [30; CPU 2]")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first [10; CPU 1]")
    ap.add_argument("--speed-workers", type=int, default=None, help="loader workers [8; CPU 0]")
    ap.add_argument("--compile", default="off", help="torch.compile mode (off)")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--json", default=None, help="write the figures to this file")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=None, help="images in the store [256; CPU 64]")
    ap.add_argument("--size", type=int, default=384, help="image side (384: 24x24 latents)")
    ap.add_argument("--codec", choices=["demo", "random"], default="demo")
    ap.add_argument("--threads", type=int, default=None, help="torch threads on the CPU")
    add_arguments(ap)
    args = ap.parse_args()
    import torch

    from latentcache.train.distributed import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.disable(logging.INFO)
    cuda = resolve_device(args.device).type == "cuda"
    images = args.images or (CUDA_DEFAULTS if cuda else CPU_DEFAULTS)["images"]
    tmp = Path(tempfile.mkdtemp(prefix="lc-bench-speed-"))
    try:
        from train_input import encode_store, make_images

        root = make_images(tmp / "images", images, args.size)
        codec, what = bench_codec(args.codec)
        store = encode_store(codec, root, tmp / "store", 64)
        print(
            f"{images} images {args.size}² encoded ({what}); torch threads {torch.get_num_threads()}"
        )
        run_speed(store, root, tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

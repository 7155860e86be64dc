"""Detection training speed from latents against pixels: the step alone, side by side.

    python benchmarks/det_speed.py [--device auto|cpu|cuda] [--batch N] [--steps N]
        [--rounds N] [--height 480 --width 640] [--boxes 6] [--json FILE]

One synthetic batch per contender stays on the device (the input path is measured by
``train_input.py`` / ``seg_store.py``); each step is a full Faster R-CNN training step
(forward with its four losses, backward, SGD). Contenders, interleaved round by round so
that a busy machine slows them alike:

- ``fasterrcnn-cresnet51`` on y_hat (M=192, the image's size / 16, whole latents);
- ``fasterrcnn-sresnet101`` on y_hat (Codevilla et al.'s backbone);
- ``fasterrcnn-resnet50-fpn`` on the RGB image at its own size (``min_size`` = its shorter
  side: no resize) and at torchvision's default 800 px shorter side (the usual baseline).

Every detector gets the same boxes (``--boxes`` per image, in image pixels) and classes
(20, VOC's). GMACs: torch's FLOP counter on one training forward per image (backbone,
RPN, RoI heads), halved. The figure to read is the ratio, latents / pixels, from one run;
CUDA runs use bfloat16 autocast where supported.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from contextlib import nullcontext

warnings.filterwarnings("ignore")

CLASSES = 20
M = 192  # bmshj2018-hyperprior's latent channels at qualities 1..5


def _targets(batch: int, height: int, width: int, boxes: int, device):
    import torch

    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(batch):
        wh = torch.rand(boxes, 2, generator=g) * torch.tensor([width / 2, height / 2]) + 24
        xy = torch.rand(boxes, 2, generator=g) * (torch.tensor([width, height]) - wh)
        b = torch.cat([xy, xy + wh], 1)
        out.append({
            "boxes": b.to(device),
            "labels": torch.randint(0, CLASSES, (boxes,), generator=g).to(device),
            "image_size": (height, width),
            "canvas_offset": (0, 0),
        })  # fmt: skip
    return out


def contenders(args, device) -> list[tuple[str, object, list]]:
    import torch

    from latentcache.train.models.detector_registry import create_detector

    h, w = args.height, args.width
    latent = torch.randn(args.batch, M, h // 16, w // 16, device=device)
    image = torch.rand(args.batch, 3, h, w, device=device)
    small = {"pretrained": False}
    out = [
        ("fasterrcnn-cresnet51 (latents)", create_detector("fasterrcnn-cresnet51", M, CLASSES), [latent]),
        ("fasterrcnn-sresnet101 (latents)", create_detector("fasterrcnn-sresnet101", M, CLASSES, **small), [latent]),
        (f"fasterrcnn-resnet50-fpn ({min(h, w)} px)", create_detector("fasterrcnn-resnet50-fpn", 3, CLASSES, min_size=min(h, w), max_size=max(h, w), **small), [image]),
        ("fasterrcnn-resnet50-fpn (800 px)", create_detector("fasterrcnn-resnet50-fpn", 3, CLASSES, **small), [image]),
    ]  # fmt: skip
    return [(name, model.to(device).train(), xs) for name, model, xs in out]


def _gmacs(model, xs, targets) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(*xs, targets=targets)
    return counter.get_total_flops() / 2 / len(targets) / 1e9


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _steps(model, xs, targets, optimizer, n: int, device, amp) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(n):
        with amp():
            loss = sum(v.float() for v in model(*xs, targets=targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch", type=int, default=None, help="[default: 8 on CUDA, 2 on the CPU]")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--height", type=int, default=None, help="[default: 480 CUDA, 256 CPU]")
    p.add_argument("--width", type=int, default=None, help="[default: 640 CUDA, 384 CPU]")
    p.add_argument("--boxes", type=int, default=6)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    args.batch = args.batch or (8 if cuda else 2)
    args.steps = args.steps or (10 if cuda else 1)
    args.height, args.width = (
        args.height or (480 if cuda else 256),
        args.width or (640 if cuda else 384),
    )
    if args.height % 16 or args.width % 16:
        p.error("--height and --width must be multiples of 16 (the codec's stride)")
    torch.manual_seed(0)
    bf16 = cuda and torch.cuda.is_bf16_supported()
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else nullcontext  # noqa: E731
    targets = _targets(args.batch, args.height, args.width, args.boxes, device)
    runs = []
    for name, model, xs in contenders(args, device):
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        gmacs = _gmacs(model, xs, targets)
        _steps(model, xs, targets, opt, 1, device, amp)  # warm-up (cudnn, allocator)
        runs.append({"name": name, "model": model, "xs": xs, "opt": opt, "gmacs": gmacs, "t": 0.0})
    for _ in range(args.rounds):  # interleaved: load on a shared machine hits all alike
        for r in runs:
            r["t"] += _steps(r["model"], r["xs"], targets, r["opt"], args.steps, device, amp)
    n = args.rounds * args.steps * args.batch
    base = n / runs[2]["t"]
    rows = [
        {"model": r["name"], "gmacs_per_image": round(r["gmacs"], 2), "images_per_s": n / r["t"],
         "vs_pixels_native": (n / r["t"]) / base}
        for r in runs
    ]  # fmt: skip
    print(f"device {device} ({torch.cuda.get_device_name(device) if cuda else 'cpu'}), batch "
          f"{args.batch}, image {args.height}x{args.width}, {args.boxes} boxes, {n} images each")  # fmt: skip
    print(f"{'model':<40} {'GMACs/img':>10} {'img/s':>8} {'vs pixels':>10}")
    for row in rows:
        print(f"{row['model']:<40} {row['gmacs_per_image']:>10.1f} {row['images_per_s']:>8.2f} "
              f"{row['vs_pixels_native']:>9.2f}x")  # fmt: skip
    result = {
        "device": str(device),
        "batch": args.batch,
        "image": [args.height, args.width],
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()

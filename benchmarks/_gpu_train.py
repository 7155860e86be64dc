"""``train_input.py --gpu``: training samples/s on one CUDA device, and the share of each step
spent waiting for data (never required; needs CUDA).

    latents: latentcache loader (worker processes, pinned memory) ─► GPU: uint8 index lookup,
             normalize, crop 28 + flip per sample on the batch tensor ─► cResNet-39 (AMP,
             channels_last)
    pixels:  JPEG bytes (worker processes) ─► torchvision.io.decode_jpeg on the GPU ─►
             flip, normalize on the GPU ─► ResNet-50 (AMP, channels_last)

Waiting for data = time from the end of one step until the next batch is on the device and
ready (the fetch, the copy and for JPEGs the GPU decode), each step synchronized.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["bench_gpu", "time_steps"]

WARMUP, STEPS = 5, 40


def time_steps(model, batches, prepare, device, steps: int = STEPS) -> dict:
    """Samples/s and the data-wait share over ``steps`` steps after ``WARMUP`` untimed ones."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    it = iter(batches)
    wait = total = 0.0
    seen = 0
    for step in range(WARMUP + steps):
        t0 = time.perf_counter()
        xs, labels = prepare(next(it))
        torch.cuda.synchronize(device)
        t1 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(*xs).float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize(device)
        if step >= WARMUP:
            wait, total, seen = wait + t1 - t0, total + time.perf_counter() - t0, seen + len(labels)
    getattr(it, "_shutdown_workers", lambda: None)()  # workers of an endless loader: stop them
    return {"samples_per_s": seen / total, "wait_share": wait / total, "samples": seen}


def _latent_batches(store: Path, batch: int, workers: int, model, device):
    import torch

    from latentcache.store import open_store
    from latentcache.train.augment import AugmentConfig, LatentStats, LatentTransform
    from latentcache.train.data import StreamSpec, build_loader

    st = open_store(store)
    spec = StreamSpec(
        store=str(store), split="train", fields=model.inputs, shuffle=True, batch_size=batch,
        batches_per_rank=10**6,
    )  # fmt: skip
    loader = build_loader(spec, workers=workers, pin_memory=True, recycle=True)
    stats = LatentStats.from_dict(st.split_info("train")["stats"])
    transform = LatentTransform(model.inputs, stats, AugmentConfig())
    gen = torch.Generator().manual_seed(0)

    def prepare(b):
        moved = {k: b[k].to(device, non_blocking=True) for k in model.inputs}
        xs = [x.contiguous(memory_format=torch.channels_last) for x in transform(moved, True, gen)]
        return xs, b["label"].to(device, non_blocking=True)

    return loader, prepare


class JpegBytes:
    """(file bytes, label) of the JPEGs, cycled: the GPU decodes them."""

    def __init__(self, files) -> None:
        self.files = files

    def __len__(self) -> int:
        return 10**6

    def __getitem__(self, i: int):
        from torchvision.io import read_file

        path, label = self.files[i % len(self.files)]
        return read_file(str(path)), label


def collate_bytes(samples):
    """One flat uint8 tensor of the batch's files, their lengths, their labels: a batch
    crosses from a worker as one shared-memory tensor, not one per file (a file descriptor
    each, which runs out with many workers)."""
    import torch

    return (
        torch.cat([s[0] for s in samples]),
        [len(s[0]) for s in samples],
        [s[1] for s in samples],
    )


def _jpeg_batches(files, batch: int, workers: int, device):
    import torch
    from torch.utils.data import DataLoader
    from torchvision.io import decode_jpeg

    loader = DataLoader(
        JpegBytes(files), batch_size=batch, num_workers=workers, collate_fn=collate_bytes,
        shuffle=True, multiprocessing_context="spawn" if workers else None,
    )  # fmt: skip
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255

    def prepare(b):
        flat, lengths, labels = b
        data = list(torch.split(flat, lengths))
        x = torch.stack(decode_jpeg(data, device=device)).float()  # (B, 3, 224, 224)
        flip = torch.rand(len(x), device=device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        return [x], torch.as_tensor(labels, device=device)

    return loader, prepare


def bench_gpu(store: Path, images: Path, tmp: Path, batch: int) -> dict:
    import torch
    from _train_steps import write_jpegs

    from latentcache.store import open_store
    from latentcache.train.models import create_classifier

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    st = open_store(store)
    workers = max(1, min(8, (os.cpu_count() or 2) - 1))
    cres = create_classifier("cresnet39", st.num_channels, len(st.classes)).to(device)
    cres = cres.to(memory_format=torch.channels_last)
    res50 = create_classifier("resnet50", 3, len(st.classes), pretrained=False).to(device)
    res50 = res50.to(memory_format=torch.channels_last)
    files = write_jpegs(images, tmp / "jpeg-gpu")
    results = {
        "cresnet39 on latents (crop 28)": time_steps(
            cres, *_latent_batches(store, batch, workers, cres, device), device
        ),
        "ResNet-50 on JPEG 224 (GPU decode)": time_steps(
            res50, *_jpeg_batches(files, batch, workers, device), device
        ),
    }
    base = results["ResNet-50 on JPEG 224 (GPU decode)"]["samples_per_s"]
    print(f"{torch.cuda.get_device_name(device)}, {workers} loader workers, batch {batch}")
    print(f"{'GPU training step':<38}{'samples/s':>11}{'waiting for data':>18}{'speed-up':>10}")
    for name, r in results.items():
        print(
            f"{name:<38}{r['samples_per_s']:>11.0f}{r['wait_share']:>18.1%}"
            f"{r['samples_per_s'] / base:>9.2f}x"
        )
    return results

"""Timed training epochs for the benchmarks: latents through latentcache's loader and
augmentation, or 224² JPEGs the ImageNet way; and a forward-pass MAC count."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["count_gmacs", "latent_epoch", "pixel_epoch", "write_jpegs", "JpegDataset"]

WARMUP_BATCH = 8  # one untimed step first: first-call costs, not a second full-size step


def count_gmacs(model, inputs: list) -> float:
    """Multiply-accumulates of one forward pass per sample, in 10^9: torch's FLOP counter
    (every convolution and matmul it dispatches), halved."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() / 2 / inputs[0].shape[0] / 1e9


def latent_epoch(store_path: Path, batch_size: int, samples: int, native: bool):
    """``(samples, seconds)`` of cresnet39 training on the store, after one untimed step."""
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
    augment = AugmentConfig(resize=None, crop=None) if native else AugmentConfig()
    prepare = make_prepare(
        LatentTransform(model.inputs, stats, augment), torch.device("cpu"), False
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)

    def epoch(steps: int, batch: int) -> int:
        spec = StreamSpec(
            store=str(store_path), split="train", fields=model.inputs, shuffle=True,
            batch_size=batch, batches_per_rank=steps,
        )  # fmt: skip
        out = train_one_epoch(model, build_loader(spec, recycle=True), prepare, opt, generator=gen)
        return out["train_samples"]

    epoch(1, WARMUP_BATCH)  # warm-up: first-call costs
    t0 = time.perf_counter()
    n = epoch(samples // batch_size, batch_size)
    return n, time.perf_counter() - t0


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


def pixel_epoch(files: list[tuple[Path, int]], batch_size: int, samples: int, classes: int):
    """``(samples, seconds)`` of ResNet-50 training on the JPEGs, after one untimed step."""
    import torch
    from torch.utils.data import DataLoader

    from latentcache.train.loop import train_one_epoch
    from latentcache.train.models import create_classifier

    torch.manual_seed(0)
    model = create_classifier("resnet50", 3, classes, pretrained=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    reps = -(-(samples + batch_size) // len(files))
    data = JpegDataset((files * reps)[: samples + batch_size])

    def prepare(batch, train, generator):
        return [batch["image"]], batch["label"]

    def epoch(subset, batch: int) -> int:
        loader = DataLoader(subset, batch_size=batch, shuffle=True, drop_last=True)
        batches = ({"image": x, "label": y} for x, y in loader)
        return train_one_epoch(model, batches, prepare, opt)["train_samples"]

    epoch(torch.utils.data.Subset(data, range(WARMUP_BATCH)), WARMUP_BATCH)  # warm-up
    t0 = time.perf_counter()
    n = epoch(torch.utils.data.Subset(data, range(batch_size, batch_size + samples)), batch_size)
    return n, time.perf_counter() - t0

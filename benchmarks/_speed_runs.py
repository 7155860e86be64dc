"""The contenders of ``train_speed.py``: how each model gets its batches, and the three timed
runs (compute only, input path only, end to end).

    latents: StreamSpec train loader (workers, recycled buffers) | the split in memory
             (--cache device) ─► DeviceFeeder (pinned ring, copy stream on CUDA)
             ─► LatentTransform on the device (index -> log σ̂, normalize, crop/flip,
             channels_last on CUDA) ─► model
    pixels:  JPEG bytes (DataLoader workers) ─► torchvision.io.decode_jpeg on the device
             ─► flip, normalize on the device ─► ResNet-50
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "Contender",
    "latent_contender",
    "jpeg_contender",
    "count_gmacs",
    "compute_run",
    "input_run",
    "end_to_end_run",
]


@dataclass
class Contender:
    """One row of the table: a model, the size it sees, where its batches come from."""

    name: str
    model: object  # nn.Module on the device (channels_last on CUDA)
    input_shapes: list[tuple[int, ...]]  # one sample's model inputs
    batches: Callable[[int, int, str], Iterable]  # (batch, steps, cache) -> device batches
    prepare: Callable[[dict, object], tuple[list, object]]  # (batch, generator) -> xs, labels
    cacheable: bool = True
    gmacs: float = 0.0


def count_gmacs(model, shapes: list[tuple[int, ...]]) -> float:
    """GMACs of one forward pass per sample: torch's FLOP counter (every matmul and
    convolution it dispatches), halved."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = getattr(model, "_orig_mod", model)
    device = next(model.parameters()).device
    xs = [torch.zeros(2, *s, device=device) for s in shapes]
    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*xs)
    model.train(was)
    return counter.get_total_flops() / 2 / 2 / 1e9


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Clock:
    """Batches of an iterable, the first ``warmup`` untimed; counts the time spent waiting in
    ``next()`` (fetching, staging, copying) during the timed ones."""

    def __init__(self, batches: Iterable, warmup: int, device) -> None:
        self.batches, self.warmup, self.device = batches, warmup, device
        self.wait = self.start = self.stop = 0.0
        self.samples = 0

    def __iter__(self) -> Iterator:
        it = iter(self.batches)
        for step in range(10**9):
            if step == self.warmup:
                _sync(self.device)
                self.start = time.perf_counter()
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            if step >= self.warmup:
                self.wait += time.perf_counter() - t0
                self.samples += len(batch["label"])
            yield batch
        _sync(self.device)
        self.stop = time.perf_counter()

    def result(self) -> dict:
        seconds = max(self.stop - self.start, 1e-9)
        return {"samples_per_s": self.samples / seconds, "wait_share": self.wait / seconds}


def _train(c: Contender, batches: Iterable, prepare, device) -> None:
    import torch

    from latentcache.train.epoch import amp_context, train_one_epoch
    from latentcache.train.speed import use_fused

    params = list(c.model.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, fused=use_fused(params, True) or None)
    amp = lambda: amp_context(device, True)  # noqa: E731
    train_one_epoch(c.model, batches, prepare, opt, amp=amp)


def compute_run(c: Contender, batch: int, steps: int, warmup: int, device) -> dict:
    """The step alone: the same synthetic, already augmented batch on the device each time."""
    import torch

    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    xs = [
        torch.randn(batch, *s, device=device).contiguous(memory_format=fmt) for s in c.input_shapes
    ]
    labels = torch.randint(0, 3, (batch,), device=device)
    clock = _Clock(({"label": labels} for _ in range(warmup + steps)), warmup, device)
    _train(c, clock, lambda b, train, gen: (xs, b["label"]), device)
    return clock.result()


def input_run(c: Contender, batch: int, steps: int, warmup: int, device, cache: str) -> dict:
    """The input path alone: batches onto the device and augmented there, no model."""
    import torch

    gen = torch.Generator().manual_seed(0)
    clock = _Clock(c.batches(batch, warmup + steps, cache), warmup, device)
    for b in clock:
        c.prepare(b, gen)
    return clock.result()


def end_to_end_run(c: Contender, batch: int, steps: int, warmup: int, device, cache: str) -> dict:
    """Input path and step together; wait share: time blocked on the next batch."""
    import torch

    gen = torch.Generator().manual_seed(0)
    clock = _Clock(c.batches(batch, warmup + steps, cache), warmup, device)
    _train(c, clock, lambda b, train, g: c.prepare(b, gen), device)
    return clock.result()


# ------------------------------------------------------------- where batches come from


def _close(loader) -> None:
    """Stop a DataLoader's persistent workers (they outlive each epoch)."""
    it = getattr(loader, "_iterator", None)
    if it is not None:
        it._shutdown_workers()


def latent_contender(name, model, store, augment, workers: int, device) -> Contender:
    import torch

    from latentcache.store import open_store
    from latentcache.train.augment import LatentStats, LatentTransform
    from latentcache.train.cache import cache_loader
    from latentcache.train.data import StreamSpec, build_loader
    from latentcache.train.epoch import make_prepare
    from latentcache.train.feed import DeviceFeeder

    st = open_store(store)
    stats = LatentStats.from_dict(
        st.split_info("train")["stats"] | {"scales_floor": st.scale_floor}
    )
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    transform = LatentTransform(model.inputs, stats, augment, fmt)
    prepare = make_prepare(transform, device, channels_last=True)
    feeder = DeviceFeeder(device)
    caches: dict = {}
    loaders: dict = {}

    def batches(batch: int, steps: int, cache: str) -> Iterator[dict]:
        spec = StreamSpec(
            store=str(store), split="train", fields=tuple(model.inputs), shuffle=True,
            batch_size=batch, batches_per_rank=steps,
        )  # fmt: skip
        if cache != "off":
            key = (batch, steps)
            if key not in caches:  # filled once (the first epoch), then read from memory
                caches.clear()
                caches[key] = cache_loader(spec, cache, device, workers, steps)
            yield from feeder(caches[key])
            return
        if loaders.get("key") != (batch, steps):  # workers kept across the runs of a row
            _close(loaders.pop("loader", None))
            loaders.update(key=(batch, steps), loader=build_loader(spec, workers, recycle=True))
        loader = loaders["loader"]
        loader.dataset.set_epoch(loader.dataset.epoch + 1)
        yield from feeder(loader)

    hw = tuple(st.split_info("train")["latent_shape"])
    shape = transform.output_size(hw)
    shapes = [(st.num_channels, *shape) for _ in model.inputs]
    return Contender(name, model, shapes, batches, lambda b, gen: prepare(b, True, gen))


def jpeg_contender(name, model, files, workers: int, device) -> Contender:
    import torch
    from _gpu_train import JpegBytes, collate_bytes
    from torch.utils.data import DataLoader
    from torchvision.io import decode_jpeg

    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    iters: dict = {}

    def batches(batch: int, steps: int, cache: str) -> Iterator[dict]:
        if iters.get("batch") != batch:  # one endless loader per row, its workers kept
            getattr(iters.pop("it", None), "_shutdown_workers", lambda: None)()
            loader = DataLoader(
                JpegBytes(files), batch_size=batch, num_workers=workers, collate_fn=collate_bytes,
                shuffle=True, multiprocessing_context="spawn" if workers else None,
            )  # fmt: skip
            iters.update(batch=batch, it=iter(loader))
        for _ in range(steps):
            flat, lengths, labels = next(iters["it"])
            yield {"jpeg": flat, "lengths": lengths, "label": labels}

    def prepare(b: dict, gen) -> tuple[list, object]:
        data = list(torch.split(b["jpeg"], b["lengths"]))
        dev = device if device.type == "cuda" else "cpu"
        x = torch.stack(decode_jpeg(data, device=dev)).float()  # (B, 3, 224, 224)
        flip = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(flip.to(device)[:, None, None, None], x.flip(-1), x)
        x = ((x - mean) / std).contiguous(memory_format=fmt)
        return [x], torch.as_tensor(b["label"], device=device)

    return Contender(name, model, [(3, 224, 224)], batches, prepare, cacheable=False)

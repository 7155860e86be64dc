"""chamain2021 on a detector: fine-tune the codec and/or a Faster R-CNN for detection.

::

    DetectionImages: image ─► pad /64 as encode does ─► x (3, Hp, Wp); its boxes (load_boxes)
                     with image_size and canvas_offset (where the image sits on the canvas)
    x ─► codec_forward (objective.py: STE y_hat, sigma-hat; likelihood rate R)
       ├─ detector reads images:  g_s(y_hat) clamped, STE-rounded to 8 bits, cut to each image
       └─ detector reads latents: y_hat (and scales_hat), through ``latent_inputs``
    (``original``: no codec; the detector reads x cut to each image, for the baseline on the
     uncompressed images; task mode only)
    ─► detector(*inputs, targets) ─► torchvision's four losses
    loss = sum(losses)  (+ beta * R when the codec trains)

Modes (as for classifiers, ``finetune/objective.py``):
- ``task``  (T-FT): the detector trains on the frozen codec's output (decoded pixels, or
  latents); the codec runs without gradients and is not touched;
- ``codec`` (C-FT): g_a, h_a, h_s, the entropy bottleneck (its quantiles on their own Adam)
  and, for a detector of decoded pixels, g_s train; the detector is frozen: no gradient, and
  its BatchNorm statistics stay put (train mode only so that it returns its losses);
- ``joint`` (J-FT): both.
A detector's own frozen parts (torchvision's frozen trunk layers, FrozenBatchNorm) stay frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from latentcache.errors import ConfigError
from latentcache.finetune.data import BucketBatches, ImageSplit
from latentcache.finetune.objective import (
    check_architecture,
    codec_forward,
    codec_parameters,
    freeze,
    straight_through,
)

__all__ = [
    "MODES",
    "DetectionImages",
    "DetectionTerms",
    "DetectionFinetuner",
    "canvas_offset",
    "detection_loader",
    "detection_loss",
    "decoded_images",
]

MODES = ("task", "codec", "joint")


def canvas_offset(h: int, w: int) -> tuple[int, int]:
    """``(pad_top, pad_left)`` of an H x W image on CompressAI's canvas (centred pad to 64)."""
    from compressai.ops import compute_padding

    (left, _right, top, _bottom), _ = compute_padding(h, w, min_div=64)
    return int(top), int(left)


class DetectionImages(ImageSplit):
    """One split's padded images and their validated boxes (a bad annotation: ConfigError)."""

    def __init__(self, root: Path, samples, category_ids) -> None:
        super().__init__(root, samples)
        self.category_ids = list(category_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        from latentcache.datasets.boxes import load_boxes
        from latentcache.errors import SampleError

        x, _, hw = super().__getitem__(i)
        s = self.samples[i]
        try:
            t = load_boxes(self.root, s.target, hw, self.category_ids)
        except SampleError as exc:
            raise ConfigError(f"{s.target}: {exc}") from None
        return x, {
            "boxes": torch.from_numpy(t.boxes),
            "labels": torch.from_numpy(t.labels),
            "iscrowd": torch.from_numpy(t.iscrowd.astype("int64")),
            "image_size": tuple(hw),
            "canvas_offset": canvas_offset(*hw),
        }


def _collate(items) -> dict:
    xs, targets = zip(*items, strict=True)
    return {"x": torch.stack(xs).float().div_(255.0), "targets": list(targets)}


def detection_loader(
    images: DetectionImages, batch_size: int, shuffle: bool, seed: int = 0, workers: int = 0
) -> torch.utils.data.DataLoader:
    """Same-size batches (``x`` (B, 3, Hp, Wp) in [0, 1], ``targets``), seeded per epoch."""
    return torch.utils.data.DataLoader(
        images,
        batch_sampler=BucketBatches(images.buckets, batch_size, shuffle, seed),
        collate_fn=_collate,
        num_workers=workers,
        multiprocessing_context="spawn" if workers else None,
    )


def decoded_images(x_hat: torch.Tensor, targets: list[dict]) -> list[torch.Tensor]:
    """g_s's canvases clamped to [0, 1], rounded to 8 bits (STE: the gradient passes), and
    cut to each image: what a detector of decoded PNGs sees."""
    x = x_hat.clamp(0, 1)
    x = straight_through(x, torch.round(x * 255.0) / 255.0)
    out = []
    for img, t in zip(x, targets, strict=True):
        (top, left), (h, w) = t["canvas_offset"], t["image_size"]
        out.append(img[:, top : top + h, left : left + w])
    return out


@dataclass
class DetectionTerms:
    loss: torch.Tensor
    detection: torch.Tensor  # the sum of the detector's losses
    losses: dict[str, torch.Tensor]
    bpp: torch.Tensor


def reads_pixels(detector: nn.Module) -> bool:
    return list(getattr(detector, "inputs", ())) == ["image"]


def detection_loss(
    codec: nn.Module,
    detector: nn.Module,
    x: torch.Tensor,
    targets: list[dict],
    *,
    codec_on: bool,
    beta: float,
    scales_repr: str = "index",
    latent_inputs: Callable[[dict], tuple] | None = None,
    original: bool = False,
) -> DetectionTerms:
    """The objective of the module docstring for one batch (``x`` padded, in [0, 1])."""
    if original:  # the uncompressed images: x is 8-bit already, so this only cuts it
        losses = detector(decoded_images(x, targets), targets=targets)
        detection = sum(losses.values())
        return DetectionTerms(detection, detection, losses, x.new_zeros(()))
    pixels = reads_pixels(detector)
    with nullcontext() if codec_on else torch.no_grad():
        out = codec_forward(codec, x, scales_repr, with_x_hat=pixels)
        if pixels:
            xs = (decoded_images(out.x_hat, targets),)
        elif latent_inputs is not None:
            xs = tuple(latent_inputs(out.inputs))
        else:
            xs = tuple(out.inputs[k] for k in detector.inputs)
    losses = detector(*xs, targets=targets)
    detection = sum(losses.values())
    loss = detection + beta * out.bpp if codec_on else detection
    return DetectionTerms(loss, detection, losses, out.bpp)


class DetectionFinetuner:
    """Optimizers and one training step of a mode (see the module docstring)."""

    def __init__(
        self,
        codec: nn.Module,
        detector: nn.Module,
        mode: str,
        *,
        beta: float = 1.0,
        lr: float = 1e-4,
        detector_lr: float | None = None,
        aux_lr: float = 1e-3,
        clip_max_norm: float = 1.0,
        scales_repr: str = "index",
        latent_inputs: Callable[[dict], tuple] | None = None,
        original: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f'Invalid mode "{mode}", should be one of {MODES}')
        if original and (mode != "task" or not reads_pixels(detector)):
            raise ConfigError("a detector of the original images trains in mode task only")
        check_architecture(codec)
        self.codec, self.detector, self.mode = codec, detector, mode
        self.beta, self.clip, self.scales_repr = beta, clip_max_norm, scales_repr
        self.latent_inputs, self.original = latent_inputs, original
        self.opts: dict[str, torch.optim.Optimizer] = {}
        own = [p for p in detector.parameters() if p.requires_grad]  # its frozen parts stay
        net, aux = codec_parameters(codec, train_g_s=reads_pixels(detector))
        freeze(codec, net + aux if self.trains_codec else [])
        freeze(detector, own if self.trains_detector else [])
        if self.trains_codec:
            self.opts["codec"] = torch.optim.Adam(net, lr=lr)
            self.opts["aux"] = torch.optim.Adam(aux, lr=aux_lr)
        if self.trains_detector:
            self.opts["detector"] = torch.optim.Adam(own, lr=detector_lr or lr)

    @property
    def trains_codec(self) -> bool:
        return self.mode in ("codec", "joint")

    @property
    def trains_detector(self) -> bool:
        return self.mode in ("task", "joint")

    def set_modes(self) -> None:
        """Codec in train mode only when it trains; the detector always returns its losses,
        but a frozen detector's BatchNorm keeps its running statistics."""
        self.codec.train(self.trains_codec)
        self.detector.train()
        if not self.trains_detector:
            for m in self.detector.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def step(self, x: torch.Tensor, targets: list[dict]) -> dict:
        """One optimisation step on a batch; returns the batch's figures."""
        self.set_modes()
        for o in self.opts.values():
            o.zero_grad(set_to_none=True)
        terms = detection_loss(
            self.codec, self.detector, x, targets, codec_on=self.trains_codec, beta=self.beta,
            scales_repr=self.scales_repr, latent_inputs=self.latent_inputs, original=self.original,
        )  # fmt: skip
        if not torch.isfinite(terms.loss.detach()):
            raise FloatingPointError("detection fine-tuning loss is not finite; lower lr or beta")
        terms.loss.backward()
        if self.trains_codec and self.clip > 0:
            params = [p for g in self.opts["codec"].param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.clip)
        for k in ("codec", "detector"):
            if k in self.opts:
                self.opts[k].step()
        record = {"loss": float(terms.loss.detach()), "bpp": float(terms.bpp.detach())}
        record |= {k: float(v.detach()) for k, v in terms.losses.items()}
        if "aux" in self.opts:
            aux_loss = self.codec.aux_loss()
            aux_loss.backward()
            self.opts["aux"].step()
            record["aux"] = float(aux_loss.detach())
        return record

"""Task mode on decoded pixels: a pixel classifier (the recipes' decoded baseline,
``run_image_training`` on a ``decode`` folder) fine-tuned on the codec's own reconstruction
``g_s(y_hat)``, the codec frozen (T-FT).

::

    x ─► codec (frozen) ─► y_hat = round(y) ─► g_s ─► unpad (centered) ─► clamp, 8 bits
      ─► resize (shorter side), crop (random | center), flip (train) ─► ImageNet normalise
      ─► classifier (its ImageTrainConfig's resize, crop, flip)

This is what ``decode`` writes as PNG and what ``run_image_training`` reads back, computed in one
pass on tensors, so fine-tuning sees the images the classifier is evaluated on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latentcache.errors import ConfigError

__all__ = [
    "is_pixel_run",
    "build_pixel_classifier",
    "PixelTransform",
    "decoded_pixels",
    "classifier_inputs",
]

_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # as pixels.train


def is_pixel_run(state: dict | None) -> bool:
    """Whether a classifier checkpoint reads images (a pixel baseline) rather than latents."""
    return state is not None and list(state.get("inputs") or []) == ["image"]


def build_pixel_classifier(state: dict) -> torch.nn.Module:
    from latentcache.pixels.train import ImageTrainConfig, _build_model

    cfg = ImageTrainConfig.from_dict(state["config"])
    if cfg.source != "decoded":
        raise ConfigError(
            f"finetune trains a pixel classifier of decoded images, not {cfg.source!r} ones"
        )
    model = _build_model(cfg, len(state["classes"]), pretrained=False)
    model.load_state_dict(state["model"])
    return model


@torch.no_grad()
def decoded_pixels(model, y_hat: torch.Tensor, sizes) -> torch.Tensor:
    """g_s(y_hat), unpadded to the batch's image size (batches never mix sizes), in [0, 1]."""
    from compressai.ops import compute_padding

    h, w = (int(v) for v in sizes[0])
    _, unpad = compute_padding(h, w, min_div=64)
    x_hat = F.pad(model.g_s(y_hat.float()), unpad).clamp_(0, 1)
    return torch.round(x_hat * 255.0) / 255.0  # the PNG's 8 bits


def classifier_inputs(model, inputs: dict, sizes, state: dict | None) -> dict:
    """What the classifier reads: the latents, or g_s(y_hat) for a decoded-pixel classifier."""
    if not is_pixel_run(state):
        return inputs
    return {"x_hat": decoded_pixels(model, inputs["y_hat"].detach(), sizes)}


class PixelTransform:
    """The pixel baseline's resize, crop, flip and normalisation on a batch of tensors."""

    def __init__(self, state: dict, train: bool) -> None:
        cfg = state["config"]
        self.resize, self.crop, self.flip = int(cfg["resize"]), int(cfg["crop"]), cfg["flip"]
        self.train = train

    def _resized(self, h: int, w: int) -> tuple[int, int]:
        if h <= w:
            return self.resize, int(self.resize * w / h)
        return int(self.resize * h / w), self.resize

    def __call__(self, inputs: dict, train: bool, generator) -> list[torch.Tensor]:
        x = inputs["x_hat"]
        x = F.interpolate(x, size=self._resized(*x.shape[-2:]), mode="bilinear",
                          antialias=True, align_corners=False)  # fmt: skip
        h, w, c = x.shape[-2], x.shape[-1], self.crop
        if train and self.train:
            top = int(torch.randint(h - c + 1, (1,), generator=generator))
            left = int(torch.randint(w - c + 1, (1,), generator=generator))
        else:
            top, left = (h - c) // 2, (w - c) // 2
        x = x[..., top : top + c, left : left + c]
        if train and self.train and self.flip:
            flip = torch.rand(x.shape[0], generator=generator) < 0.5
            x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
        mean = torch.tensor(_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(_STD, device=x.device).view(1, 3, 1, 1)
        return [(x - mean) / std]

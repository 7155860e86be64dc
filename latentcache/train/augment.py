"""Latent-space augmentation of Gupta et al. (2024): resize to 32, random crop 28,
horizontal flip; a deterministic center crop for evaluation.

::

    batch {"y_hat": (B, M, h, w) int16, "scales_hat": (B, M, h, w) uint8 index | float32,
           "means_hat": (B, M, h, w) float32 (codecs with means)}
      └► normalize: y_hat (+ means_hat where the store has it: the decoder's y_hat)
         standardized; means_hat standardized; scales_hat floored at the store's scale_floor (the
         codec's lower bound, 0.11) -> log -> standardized (a uint8 index: the log of
         CompressAI's scale table, looked up on the batch's device)
      └► cat along channels (B, 2M, h, w)      one tensor, so one crop and one flip
      └► resize (B, 2M, 32, 32) ─► crop 28 (+ flip) ─► split back per input

Cropping the concatenated tensor makes the alignment of ``y_hat`` and ``scales_hat``
structural: the reference code crops them at different places. Runs on whatever device
the batch is on; random draws come from an explicit CPU generator (seeded per epoch).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from latentcache.errors import ConfigError
from latentcache.store.scales import DEFAULT_SCALE_FLOOR

__all__ = [
    "AugmentConfig",
    "LatentStats",
    "LatentTransform",
    "normalize_inputs",
    "batch_fields",
    "resize_latents",
    "crop_flip_params",
    "apply_crop_flip",
    "center_crop",
]

# sigma-hat floor when the store predates its recorded ``scale_floor``; normalization uses
# ``LatentStats.scales_floor`` (the store's floor), the same as its statistics did
SCALES_FLOOR = DEFAULT_SCALE_FLOOR
STD_FLOOR = 1e-3  # a constant channel (an untrained hyperprior's scales) standardizes to 0


@dataclass(frozen=True)
class AugmentConfig:
    """``resize``: square size after resizing (None: keep); ``crop``: square crop (None: none)."""

    resize: int | None = 32
    crop: int | None = 28
    flip: bool = True

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value}: should be a positive size or None")
        if self.resize is not None and self.crop is not None and self.crop > self.resize:
            raise ConfigError(f"crop={self.crop} is larger than resize={self.resize}")


@dataclass(frozen=True)
class LatentStats:
    """Normalization statistics: scalars, or one value per channel (tuples of M floats).

    ``scales_floor``: the codec's lower bound on sigma-hat (the store's ``scale_floor``);
    log(sigma-hat) is taken after flooring there, exactly as the store's statistics were.
    """

    y_hat_mean: float | tuple[float, ...] = 0.0
    y_hat_std: float | tuple[float, ...] = 1.0
    log_scales_mean: float | tuple[float, ...] = 0.0
    log_scales_std: float | tuple[float, ...] = 1.0
    scales_floor: float = SCALES_FLOOR
    means_hat_mean: float | tuple[float, ...] = 0.0
    means_hat_std: float | tuple[float, ...] = 1.0

    @classmethod
    def from_dict(cls, d: Mapping) -> LatentStats:
        """From a store's ``split_info(split)["stats"]`` (or :meth:`to_dict`)."""

        def conv(v):
            return tuple(float(x) for x in v) if isinstance(v, list | tuple) else float(v)

        names = ("y_hat_mean", "y_hat_std", "log_scales_mean", "log_scales_std")
        missing = [n for n in names if n not in d]
        if missing:
            raise ConfigError(f"store stats lack {missing}; have {sorted(d)}")
        floor = float(d.get("scales_floor", SCALES_FLOOR))
        if not floor > 0:
            raise ConfigError(f"scales_floor={floor}: should be > 0 (the codec's scale bound)")
        means = {n: conv(d[n]) for n in ("means_hat_mean", "means_hat_std") if n in d}
        return cls(**{n: conv(d[n]) for n in names}, scales_floor=floor, **means)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _as_param(value: float | tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return _param(value, like.device)


@functools.lru_cache(maxsize=32)
def _param(value: float | tuple[float, ...], device: torch.device) -> torch.Tensor:
    """A statistic as a tensor on ``device``, made once: building it from a Python value
    every batch is a blocking host-to-device copy, which stops the host from queueing the
    next steps ahead of the GPU."""
    with torch.inference_mode(False), torch.no_grad():  # a plain tensor, whoever asks first
        t = torch.as_tensor(value, dtype=torch.float32).to(device)
    return t.view(1, -1, 1, 1) if t.ndim == 1 else t


def _standardize(x: torch.Tensor, mean, std) -> torch.Tensor:
    std_t = _as_param(std, x).clamp_min(STD_FLOOR)
    return (x - _as_param(mean, x)) / std_t


def _log_scales(scales: torch.Tensor, floor: float) -> torch.Tensor:
    """log σ̂ floored at ``floor``. A uint8 ``scales_hat`` is an index into CompressAI's
    default scale table (the collate keeps the index only for stores with that table),
    looked up on the tensor's device: 64 logs instead of one per element."""
    if scales.dtype == torch.uint8:
        return _log_scale_table(scales.device, floor)[scales.int()]
    return torch.log(scales.float().clamp_min(floor))


@functools.lru_cache(maxsize=8)
def _log_scale_table(device: torch.device, floor: float) -> torch.Tensor:
    """log of CompressAI's default scale table on ``device``: made once, not every batch."""
    from compressai.models.google import get_scale_table

    return torch.log(get_scale_table().clamp_min(floor)).to(device)


def batch_fields(inputs: Sequence[str], store_inputs: Sequence[str] | None) -> tuple[str, ...]:
    """The store fields a batch needs for a model's ``inputs``: those, and means_hat for
    y_hat where the store has means (the decoder's y_hat is ``y_hat + means_hat``)."""
    fields = tuple(inputs)
    if "y_hat" in fields and "means_hat" in (store_inputs or ()) and "means_hat" not in fields:
        fields += ("means_hat",)
    return fields


def normalize_inputs(
    batch: Mapping[str, torch.Tensor], inputs: Sequence[str], stats: LatentStats
) -> list[torch.Tensor]:
    """Float tensors in ``inputs`` order: y_hat standardized (the decoder's: + means_hat when
    the batch has it), scales_hat log-standardized, means_hat standardized."""
    out = []
    for name in inputs:
        if name == "scales_hat":
            x = _log_scales(batch[name], stats.scales_floor)
            x = _standardize(x, stats.log_scales_mean, stats.log_scales_std)
        elif name == "y_hat":
            y = batch[name].float()
            if "means_hat" in batch:
                y = y + batch["means_hat"].float()
            x = _standardize(y, stats.y_hat_mean, stats.y_hat_std)
        elif name == "means_hat":
            x = _standardize(batch[name].float(), stats.means_hat_mean, stats.means_hat_std)
        else:
            x = batch[name].float()
        out.append(x)
    return out


def resize_latents(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) to (B, C, size, size); antialiased when shrinking."""
    if x.shape[-2:] == (size, size):
        return x
    shrink = size < max(x.shape[-2:])
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )


def crop_flip_params(
    batch: int, height: int, width: int, size: int, flip: bool, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (top, left, flipped) for a ``size`` crop; drawn on the CPU."""
    if size > height or size > width:
        raise ConfigError(f"crop={size} is larger than the latent ({height}x{width})")
    top = torch.randint(0, height - size + 1, (batch,), generator=generator)
    left = torch.randint(0, width - size + 1, (batch,), generator=generator)
    flipped = (
        torch.rand(batch, generator=generator) < 0.5
        if flip
        else torch.zeros(batch, dtype=torch.bool)
    )
    return top, left, flipped


def apply_crop_flip(
    x: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    flipped: torch.Tensor,
    size: int,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Crop (B, C, H, W) at per-sample offsets and mirror the flipped ones -> (B, C, size, size),
    one gather for the whole batch. The gather writes (B, size, size, C): channels_last
    comes out without a copy."""
    device = x.device
    # one small copy; non_blocking: a pageable source is staged at once, the host goes on
    params = torch.stack([top, left, flipped.long()]).to(device, non_blocking=True)
    top, left, flipped = params[0], params[1], params[2].bool()
    base = torch.arange(size, device=device)
    rows = top[:, None] + base  # (B, size)
    cols = left[:, None] + torch.where(flipped[:, None], size - 1 - base, base)
    b = torch.arange(x.shape[0], device=device)[:, None, None]
    out = x[b, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Deterministic central (B, C, size, size) crop."""
    height, width = x.shape[-2:]
    if size > height or size > width:
        raise ConfigError(f"crop={size} is larger than the latent ({height}x{width})")
    top, left = (height - size) // 2, (width - size) // 2
    return x[..., top : top + size, left : left + size]


class LatentTransform:
    """Normalize + (resize, crop, flip) a batch of latents for a model's ``inputs``, on the
    batch's device; ``memory_format``: of the tensors handed to the model."""

    def __init__(
        self,
        inputs: Sequence[str],
        stats: LatentStats,
        config: AugmentConfig,
        memory_format: torch.memory_format = torch.contiguous_format,
        store_inputs: Sequence[str] | None = None,
    ) -> None:
        self.inputs, self.stats, self.config = tuple(inputs), stats, config
        self.memory_format = memory_format
        self.fields = batch_fields(self.inputs, store_inputs)  # what a batch must carry

    def __call__(
        self,
        batch: Mapping[str, torch.Tensor],
        train: bool,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        xs = normalize_inputs(batch, self.inputs, self.stats)
        sizes = [x.shape[1] for x in xs]
        x = torch.cat(xs, dim=1) if len(xs) > 1 else xs[0]  # (B, sum(C), h, w)
        if self.config.resize is not None:
            x = resize_latents(x, self.config.resize)
        crop = self.config.crop
        if crop is not None and train:
            params = crop_flip_params(x.shape[0], *x.shape[-2:], crop, self.config.flip, generator)
            x = apply_crop_flip(x, *params, crop, self.memory_format)
        elif crop is not None:
            x = center_crop(x, crop)
        elif train and self.config.flip:
            flipped = torch.rand(x.shape[0], generator=generator) < 0.5
            flipped = flipped.to(x.device, non_blocking=True)
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
        return [p.contiguous(memory_format=self.memory_format) for p in torch.split(x, sizes, 1)]

    def apply(
        self,
        batch: Mapping[str, torch.Tensor],
        train: bool,
        generator: torch.Generator | None,
        task,
    ) -> tuple[list[torch.Tensor], object]:
        """(model inputs, targets) for ``task`` (``latentcache.tasks``): one crop and one flip
        shared by the latents and, through the task's ``map_targets``, by its targets.

        A task that pads latents (segmentation) is never resized: training crops
        ``crop`` x ``crop`` cells (latents zero-padded up to it first) and flips; evaluation
        takes the whole latent, deterministically.
        """
        if not task.pads_latents:
            return self(batch, train, generator), task.map_targets(batch, None, None, None)
        xs = normalize_inputs(batch, self.inputs, self.stats)
        sizes = [x.shape[1] for x in xs]
        x = torch.cat(xs, dim=1) if len(xs) > 1 else xs[0]  # (B, sum(C), h, w)
        crop, params = self.config.crop, None
        if train and crop is not None:
            h, w = max(x.shape[-2], crop), max(x.shape[-1], crop)
            x = F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))
            params = crop_flip_params(x.shape[0], h, w, crop, self.config.flip, generator)
            x = apply_crop_flip(x, *params, crop)
        elif train and self.config.flip:
            flipped = torch.rand(x.shape[0], generator=generator) < 0.5
            x = torch.where(flipped.to(x.device)[:, None, None, None], x.flip(-1), x)
            params = (None, None, flipped)
        hw = (h, w) if params is not None and params[0] is not None else tuple(x.shape[-2:])
        targets = task.map_targets(batch, params, crop, hw)
        return list(torch.split(x, sizes, dim=1)), targets

    def output_size(self, latent_hw: tuple[int, int]) -> tuple[int, int]:
        """Spatial size the model sees for latents of ``latent_hw``."""
        if self.config.crop is not None:
            return (self.config.crop, self.config.crop)
        if self.config.resize is not None:
            return (self.config.resize, self.config.resize)
        return tuple(latent_hw)

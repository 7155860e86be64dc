"""Rate–distortion training of a CompressAI codec (from scratch, the zoo or a checkpoint).

::

    images (folder or a dataset's train split) ──► RGB uint8 in memory (+ sha256 per file)
      │ per step: B random crops, random h/v flips                      x (B, 3, crop, crop)
      ▼
    model(x) ──► x_hat, likelihoods ──► RateDistortionLoss(λ) = λ·255²·MSE + bpp   (CompressAI's)
      │ Adam on every parameter but the entropy bottleneck's quantiles, grad-norm clipped
      │ aux_loss() with its own Adam on the quantiles            (CompressAI examples/train.py)
      │ cosine learning-rate decay to lr · lr_final_ratio
      ▼
    every save_every steps: <out>.state.pt (model, optimizers, schedule, RNG) ──► resumable
    at the end: update(force=True) ──► save_codec_checkpoint(out) (arch, quality, λ, steps, data)

λ per quality is CompressAI's own table (``compressai.models.vbr``, the values its docs list).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentcache.atomic import atomic_write
from latentcache.codec.spec import ARCHITECTURES, LAMBDAS, CodecSpec, lambda_for
from latentcache.errors import ConfigError
from latentcache.images import IMAGE_EXTENSIONS, list_images

__all__ = [
    "LAMBDAS",
    "TrainConfig",
    "TrainResult",
    "TrainingImage",
    "lambda_for",
    "list_image_files",
    "load_training_images",
    "build_model",
    "configure_optimizers",
    "sample_batch",
    "run_codec_train",
    "state_path_for",
]

logger = logging.getLogger(__name__)

INITS = ("scratch", "zoo", "checkpoint")


def _positive(name: str, value: float, minimum: float = 1) -> None:
    if value < minimum:
        raise ConfigError(f'Invalid {name} "{value}", should be >= {minimum}')


@dataclass(frozen=True)
class TrainConfig:
    """Everything a codec training run depends on; saved inside its checkpoints."""

    out: str
    arch: str = "bmshj2018-hyperprior"
    quality: int = 3
    metric: str = "mse"
    init: str = "scratch"  # scratch | zoo | checkpoint
    init_checkpoint: str | None = None
    lmbda: float | None = None  # None: CompressAI's table for (metric, quality)
    N: int | None = None  # widths; None: the zoo's for this quality
    M: int | None = None
    steps: int = 10_000
    max_minutes: float | None = None  # stop early (and save) after this wall time
    batch_size: int = 8
    crop: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lr_final_ratio: float = 0.1  # cosine decay from lr to lr * ratio over `steps`
    clip_max_norm: float = 1.0
    seed: int = 0
    save_every: int = 250
    log_every: int = 50
    device: str = "cpu"
    half: bool = False  # store transform weights as float16 in the final file

    def __post_init__(self) -> None:
        CodecSpec(arch=self.arch, quality=self.quality, metric=self.metric)  # validates
        if self.init not in INITS:
            raise ConfigError(f'Invalid init "{self.init}", should be one of {INITS}')
        if (self.init == "checkpoint") != (self.init_checkpoint is not None):
            raise ConfigError("--init checkpoint needs --init-checkpoint FILE (and only then)")
        if self.init != "scratch" and (self.N or self.M):
            raise ConfigError("--N/--M set the widths of a model trained from scratch only")
        for name in ("steps", "batch_size", "save_every", "log_every"):
            _positive(name, getattr(self, name))
        _positive("crop", self.crop, 64)
        if self.crop % 64:
            raise ConfigError(f'Invalid crop "{self.crop}", should be a multiple of 64')
        if self.metric == "ms-ssim" and self.crop < 192:  # MS-SSIM's 4 downsamplings need > 160
            raise ConfigError(f'Invalid crop "{self.crop}" for ms-ssim, should be >= 192')
        if self.lmbda is not None and self.lmbda <= 0:
            raise ConfigError(f'Invalid lambda "{self.lmbda}", should be > 0')

    @property
    def lambda_(self) -> float:
        return self.lmbda if self.lmbda is not None else lambda_for(self.metric, self.quality)

    @property
    def widths(self) -> tuple[int, int]:
        n, m = ARCHITECTURES[self.arch][self.quality]
        return self.N or n, self.M or m

    def spec(self) -> CodecSpec:
        return CodecSpec(arch=self.arch, quality=self.quality, metric=self.metric)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class TrainingImage:
    name: str  # path relative to the image folder / dataset root
    sha256: str
    height: int
    width: int


@dataclass
class TrainResult:
    out: Path
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)  # one record per log_every steps


# ---------------------------------------------------------------- data


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); an empty folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"image folder not found: {folder}")
    files = list_images(folder)
    if not files:
        raise ConfigError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    return files


def _upscale_to(rgb: np.ndarray, size: int) -> np.ndarray:
    """Bicubic upscale so that the shorter side is at least ``size`` (small photos)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = size / min(h, w)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(new, Image.BICUBIC))


def load_training_images(
    files: list[Path], root: Path, crop: int
) -> tuple[list[torch.Tensor], list[TrainingImage]]:
    """Decode ``files`` to (3, H, W) uint8 tensors, each at least ``crop`` on its shorter side."""
    from latentcache.images import load_image

    tensors, records = [], []
    for path in files:
        loaded = load_image(Path(path).read_bytes())
        rgb = loaded.rgb
        if min(rgb.shape[:2]) < crop:
            logger.warning("%s is %dx%d, upscaled to crop %d", path, *rgb.shape[:2], crop)
            rgb = _upscale_to(rgb, crop)
        name = Path(path).relative_to(root).as_posix()
        records.append(TrainingImage(name, loaded.sha256, *loaded.rgb.shape[:2]))
        tensors.append(torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous())
    return tensors, records


def sample_batch(
    images: list[torch.Tensor], batch_size: int, crop: int, generator: torch.Generator
) -> torch.Tensor:
    """``batch_size`` random crops with random horizontal/vertical flips, in [0, 1]."""
    picks = torch.randint(len(images), (batch_size,), generator=generator).tolist()
    crops = []
    for i in picks:
        img = images[i]
        top = int(torch.randint(img.shape[1] - crop + 1, (1,), generator=generator))
        left = int(torch.randint(img.shape[2] - crop + 1, (1,), generator=generator))
        x = img[:, top : top + crop, left : left + crop]
        flips = torch.rand(2, generator=generator).tolist()
        if flips[0] < 0.5:
            x = x.flip(-1)
        if flips[1] < 0.5:
            x = x.flip(-2)
        crops.append(x)
    return torch.stack(crops).float().div_(255.0)  # (B, 3, crop, crop)


# ---------------------------------------------------------------- model and optimizers


def build_model(config: TrainConfig) -> torch.nn.Module:
    """A fresh model, the zoo's, or a checkpoint's, in train mode with gradients on."""
    from latentcache.codec.load import load_codec

    if config.init == "scratch":
        from compressai.zoo.image import model_architectures

        cls = model_architectures[config.arch]
        n, m = config.widths  # cheng2020 is built from N alone (N = M)
        model = cls(n) if config.arch.startswith("cheng2020") else cls(n, m)
    else:
        spec = replace(config.spec(), source=config.init, checkpoint=config.init_checkpoint)
        if config.init == "checkpoint":  # the starting point keeps its own labels
            spec = replace(spec, quality=None, metric=None)
        model = load_codec(spec).model
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train()


def configure_optimizers(model: torch.nn.Module, config: TrainConfig):
    """Adam for the network, a separate Adam for the entropy bottleneck's ``quantiles``."""
    params = dict(model.named_parameters())
    aux_names = sorted(n for n in params if n.endswith(".quantiles"))
    net_names = sorted(n for n in params if not n.endswith(".quantiles"))
    optimizer = torch.optim.Adam((params[n] for n in net_names), lr=config.lr)
    aux_optimizer = torch.optim.Adam((params[n] for n in aux_names), lr=config.aux_lr)
    return optimizer, aux_optimizer


def _cosine(config: TrainConfig):
    r = config.lr_final_ratio

    def factor(step: int) -> float:
        t = min(step, config.steps) / config.steps
        return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


# ---------------------------------------------------------------- state (resume)


def state_path_for(out: str | os.PathLike) -> Path:
    """The resumable training state beside the final checkpoint: ``<out>.state.pt``."""
    out = Path(out)
    return out.with_name(out.name + ".state.pt")


def _save_state(path: Path, step: int, model, optimizers, scheduler, generator, config) -> None:
    payload = {
        "step": step,
        "config": config.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizers[0].state_dict(),
        "aux_optimizer": optimizers[1].state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
    }
    with atomic_write(path) as f:
        torch.save(payload, f)


def _load_state(path: Path, model, optimizers, scheduler, generator, config) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = TrainConfig.from_dict(state["config"])
    for key in ("arch", "quality", "metric", "N", "M", "crop", "batch_size"):
        if getattr(saved, key) != getattr(config, key):
            raise ConfigError(
                f"cannot resume {path}: it was trained with {key}={getattr(saved, key)!r}, "
                f"this run asks for {getattr(config, key)!r} (use another --out or delete it)"
            )
    model.load_state_dict(state["model"])
    optimizers[0].load_state_dict(state["optimizer"])
    optimizers[1].load_state_dict(state["aux_optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    return int(state["step"])


# ---------------------------------------------------------------- the loop


def _train_step(model, criterion, optimizers, scheduler, x, clip: float) -> dict[str, float]:
    optimizer, aux_optimizer = optimizers
    optimizer.zero_grad(set_to_none=True)
    aux_optimizer.zero_grad(set_to_none=True)
    out = criterion(model(x), x)
    out["loss"].backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    aux_loss = model.aux_loss()
    aux_loss.backward()
    aux_optimizer.step()
    scheduler.step()
    mse = float(out["mse_loss"].detach()) if "mse_loss" in out else float("nan")
    return {
        "loss": float(out["loss"].detach()),
        "bpp": float(out["bpp_loss"].detach()),
        "psnr": -10 * math.log10(mse) if mse > 0 else float("inf"),
        "aux": float(aux_loss.detach()),
    }


def _progress(total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        desc="codec train",
        disable=not sys.stderr.isatty(),
        dynamic_ncols=True,
    )


def _mean(records: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in records])) for k in records[0]}


def run_codec_train(
    config: TrainConfig,
    files: list[Path],
    root: Path,
    resume: bool = True,
    data_source: dict[str, Any] | None = None,
) -> TrainResult:
    """Train, save resumable state every ``save_every`` steps, and write the final codec."""
    from compressai.losses import RateDistortionLoss

    torch.manual_seed(config.seed)
    model = build_model(config).to(config.device)  # fails fast (zoo offline, bad checkpoint)
    images, records = load_training_images(files, root, config.crop)
    optimizers = configure_optimizers(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizers[0], _cosine(config))
    generator = torch.Generator().manual_seed(config.seed)
    state = state_path_for(config.out)
    step = 0
    if resume and state.is_file():
        step = _load_state(state, model, optimizers, scheduler, generator, config)
        logger.info("resumed %s at step %d", state, step)
    criterion = RateDistortionLoss(lmbda=config.lambda_, metric=config.metric)
    logger.info(
        "training %s q%d %s (N, M)=%s λ=%g on %d images, %d steps of %dx%d crops x %d",
        config.arch,
        config.quality,
        config.init,
        config.widths,
        config.lambda_,
        len(images),
        config.steps,
        config.crop,
        config.crop,
        config.batch_size,
    )
    start, history, window = time.monotonic(), [], []
    with _progress(config.steps, step) as bar:
        while step < config.steps:
            x = sample_batch(images, config.batch_size, config.crop, generator).to(config.device)
            window.append(
                _train_step(model, criterion, optimizers, scheduler, x, config.clip_max_norm)
            )
            step += 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{window[-1]['loss']:.3f}",
                bpp=f"{window[-1]['bpp']:.3f}",
                psnr=f"{window[-1]['psnr']:.2f}",
            )
            if step % config.log_every == 0 or step == config.steps:
                history.append(_log_window(step, window, start, scheduler))
                window = []
            if step % config.save_every == 0:
                _save_state(state, step, model, optimizers, scheduler, generator, config)
            if _out_of_time(config, start):
                logger.warning("max_minutes=%s reached at step %d", config.max_minutes, step)
                break
    _save_state(state, step, model, optimizers, scheduler, generator, config)
    out = _save_final(model, config, step, records, history, data_source or {})
    return TrainResult(out, step, time.monotonic() - start, history)


def _log_window(step: int, window: list[dict], start: float, scheduler) -> dict:
    record = {"step": step, **_mean(window), "lr": scheduler.get_last_lr()[0]}
    record["seconds"] = round(time.monotonic() - start, 1)
    logger.info(
        "step %d loss %.4f bpp %.4f psnr %.2f aux %.1f lr %.2e (%.0fs)",
        step,
        record["loss"],
        record["bpp"],
        record["psnr"],
        record["aux"],
        record["lr"],
        record["seconds"],
    )
    return record


def _out_of_time(config: TrainConfig, start: float) -> bool:
    return config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes


# ---------------------------------------------------------------- final checkpoint

# Entropy-model tensors (CDFs, scale table, quantiles) stay float32 in a half-precision file.
_KEEP_FLOAT32 = ("entropy_bottleneck.", "gaussian_conditional.")


def _save_final(model, config, step, records, history, data_source) -> Path:
    from latentcache.codec.load import save_codec_checkpoint

    model = model.to("cpu").eval()
    path = save_codec_checkpoint(
        config.out,
        model,
        config.spec(),
        **{"lambda": config.lambda_},
        steps=step,
        widths=list(config.widths),
        training={
            "config": config.to_dict(),
            "data": data_source,
            "images": [asdict(r) for r in records],
            "history": history,
        },
    )
    if config.half:
        _halve_checkpoint(path)
    logger.info("saved %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def _halve_checkpoint(path: Path) -> None:
    """Store the transforms' float weights as float16 (the loader casts them back to float32)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["state_dict"] = {
        k: v.half() if v.is_floating_point() and not k.startswith(_KEEP_FLOAT32) else v
        for k, v in payload["state_dict"].items()
    }
    payload["weights_dtype"] = "float16"
    with atomic_write(path) as f:
        torch.save(payload, f)

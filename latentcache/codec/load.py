"""Build a CompressAI model from a :class:`CodecSpec` and compute its identity.

::

    CodecSpec ──► zoo:        torch hub cache file (downloaded when online) ─┐
                  checkpoint: plain state dict | latentcache checkpoint ─────┼─► model.eval() ─► Codec
                  demo:       latentcache/assets/demo-codec.pt ──────────────┤    (+ update() if the
                  model:      the caller's nn.Module ───────────────────────┘     CDF tables are empty)

The identity of a codec is the sha256 of its state dict (names, dtypes, shapes and bytes in
name order), so two stores made with the same weights say so whatever the file they came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from latentcache.codec.spec import CodecSpec
from latentcache.errors import ConfigError, WeightsNotFoundError

__all__ = [
    "Codec",
    "load_codec",
    "codec_from_model",
    "save_codec_checkpoint",
    "state_dict_sha256",
    "zoo_url",
    "zoo_cache_file",
    "DEMO_CODEC_PATH",
    "CHECKPOINT_FORMAT",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "latentcache-codec"
DEMO_CODEC_PATH = Path(__file__).resolve().parent.parent / "assets" / "demo-codec.pt"


@dataclass
class Codec:
    """A loaded codec: the CompressAI model on the CPU in eval mode, and who it is."""

    spec: CodecSpec
    model: torch.nn.Module
    weights_sha256: str
    extra: dict  # what a latentcache checkpoint recorded (lambda, steps, training data)

    @property
    def widths(self) -> tuple[int, int]:
        return int(self.model.N), int(self.model.M)

    def identity(self) -> dict[str, Any]:
        """What a store records and a training checkpoint compares."""
        n, m = self.widths
        return {
            "arch": self.spec.arch,
            "quality": self.spec.quality,
            "metric": self.spec.metric,
            "source": self.spec.source,
            "checkpoint": Path(self.spec.checkpoint).name if self.spec.checkpoint else None,
            "weights_sha256": self.weights_sha256,
            "N": n,
            "M": m,
        }


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def zoo_url(spec: CodecSpec) -> str:
    from compressai.zoo.image import model_urls

    try:
        return model_urls[spec.arch][spec.metric][spec.quality]
    except KeyError:
        raise ConfigError(
            f"CompressAI has no pretrained {spec.arch} for metric {spec.metric} quality {spec.quality}"
        ) from None


def zoo_cache_file(spec: CodecSpec) -> Path:
    """Where torch hub keeps the zoo file: ``$TORCH_HOME/hub/checkpoints/<name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(zoo_url(spec))


def _model_class(arch: str):
    from compressai.zoo.image import model_architectures

    return model_architectures[arch]


def _zoo_state_dict(spec: CodecSpec) -> dict[str, torch.Tensor]:
    url, cached = zoo_url(spec), zoo_cache_file(spec)
    if not cached.is_file() and os.environ.get("LATENTCACHE_OFFLINE") != "1":
        logger.info("downloading %s", url)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # torch hub prints "Downloading: ..."
                torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True)
        except Exception as exc:  # urllib errors, hash mismatch, partial downloads
            logger.debug("download of %s failed: %r", url, exc)
    if not cached.is_file():
        raise WeightsNotFoundError(
            f"no cached weights for {spec.arch} quality {spec.quality} ({spec.metric}): expected "
            f"{cached}, downloaded from {url}. Copy that file there (or set TORCH_HOME), "
            f"or pass a local state dict with --checkpoint FILE, or use --codec demo."
        )
    return torch.load(cached, map_location="cpu", weights_only=True)


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, metadata) from a latentcache checkpoint or a plain CompressAI state dict."""
    if not path.is_file():
        raise WeightsNotFoundError(f"codec checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read codec checkpoint {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"codec checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    if obj.get("format") == CHECKPOINT_FORMAT:
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        return obj["state_dict"], meta
    for wrapper in ("network", "state_dict"):  # CompressAI training scripts' layouts
        if isinstance(obj.get(wrapper), dict):
            return obj[wrapper], {}
    return obj, {}


def _spec_from_meta(spec: CodecSpec, meta: dict) -> CodecSpec:
    """A latentcache checkpoint knows its own arch and quality; they must agree with the spec."""
    if not meta:
        return spec
    arch, quality = meta.get("arch", spec.arch), int(meta.get("quality", spec.quality))
    if arch != spec.arch:
        raise ConfigError(f"checkpoint holds a {arch} codec, not {spec.arch}")
    return replace(spec, quality=quality, metric=meta.get("metric", spec.metric))


def _build(spec: CodecSpec, state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    from compressai.zoo import load_state_dict as rename_keys

    state_dict = {
        k: v.float() if v.is_floating_point() else v for k, v in rename_keys(state_dict).items()
    }
    return _model_class(spec.arch).from_state_dict(state_dict)


def _finish(spec: CodecSpec, model: torch.nn.Module, extra: dict) -> Codec:
    model = model.to("cpu").eval()
    if model.gaussian_conditional._offset.numel() == 0:  # trained but never update()d
        logger.info("codec has no CDF tables; running update(force=True)")
        model.update(force=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return Codec(spec, model, state_dict_sha256(model.state_dict()), extra)


def codec_from_model(model: torch.nn.Module, spec: CodecSpec | None = None) -> Codec:
    """Wrap an in-memory CompressAI model (tests, notebooks). ``spec.source`` becomes 'model'."""
    spec = replace(spec or CodecSpec(), source="model", checkpoint=None)
    return _finish(spec, model, {})


def load_codec(spec: CodecSpec) -> Codec:
    """Load the codec ``spec`` names; raises WeightsNotFoundError with a clear message offline."""
    if spec.source == "model":
        raise ConfigError("source 'model' needs codec_from_model(model), not load_codec")
    if spec.source == "zoo":
        return _finish(spec, _build(spec, _zoo_state_dict(spec)), {})
    path = Path(spec.checkpoint) if spec.source == "checkpoint" else DEMO_CODEC_PATH
    if spec.source == "demo" and not path.is_file():
        raise WeightsNotFoundError(f"the demo codec is missing from this install: {path}")
    state_dict, meta = _read_checkpoint(path)
    spec = _spec_from_meta(spec, meta)
    return _finish(spec, _build(spec, state_dict), meta)


def save_codec_checkpoint(
    path: str | os.PathLike, model: torch.nn.Module, spec: CodecSpec, **extra: Any
) -> Path:
    """Save ``model`` so that ``--checkpoint`` loads it; ``extra`` (lambda, steps, data) is kept.

    The model is ``update(force=True)``d first so that the file entropy-codes as saved.
    """
    model.update(force=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "arch": spec.arch,
        "quality": spec.quality,
        "metric": spec.metric,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path

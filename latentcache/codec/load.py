"""Build a CompressAI model from a :class:`CodecSpec` and say what it is.

::

    CodecSpec ──► zoo:        torch hub cache file (downloaded when online) ─┐  codec.weights:
                  checkpoint: plain state dict | latentcache checkpoint ─────┼─► read, check_fits
                  demo:       latentcache/assets/demo-codec.pt ──────────────┘   (keys, widths,
                  model:      the caller's nn.Module ───────────────────────────┐  shapes, tables)
                                                                                ▼
                        labels resolved (below) ─► model.eval() ─► Codec ─► identity() (the card)

What the card says is what the weights are, not what was typed:

- N, M always come from the weights;
- zoo: arch, quality and metric name the file; λ is CompressAI's table's (``quality_source``
  "zoo");
- latentcache checkpoint (``codec train``, fine-tuning, the demo codec): its recorded arch,
  quality, metric, λ and lineage; a conflicting label asked for is refused (``"checkpoint"``);
- plain state dict: a quality label must match the weights' widths in CompressAI's table
  (``compressai.zoo.image.cfgs``) and is recorded as the user's (``"user"``), λ unknown;
  without one the quality is unknown (``"unknown"``).

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

from latentcache.atomic import atomic_write
from latentcache.codec.spec import (
    DEFAULT_ARCH,
    CodecSpec,
    architectures,
    inputs_of_kind,
    lambda_for,
    model_kind,
    qualities_with_widths,
)
from latentcache.codec.weights import CHECKPOINT_FORMAT, check_fits, detect_arch, read_weights
from latentcache.errors import (
    CodecFileError,
    CodecMismatchError,
    ConfigError,
    WeightsNotFoundError,
)

__all__ = [
    "Codec",
    "load_codec",
    "load_store_codec",
    "codec_from_model",
    "save_codec_checkpoint",
    "state_dict_sha256",
    "zoo_url",
    "zoo_cache_file",
    "DEMO_CODEC_PATH",
    "CHECKPOINT_FORMAT",
    "QUALITY_SOURCES",
]

logger = logging.getLogger(__name__)

DEMO_CODEC_PATH = Path(__file__).resolve().parent.parent / "assets" / "demo-codec.pt"
# Where a codec's quality (and metric) label came from.
QUALITY_SOURCES = ("zoo", "checkpoint", "user", "unknown")


@dataclass
class Codec:
    """A loaded codec: the CompressAI model on the CPU in eval mode, and what it is."""

    spec: CodecSpec  # resolved: arch always set; quality/metric None when unknown
    model: torch.nn.Module
    weights_sha256: str
    extra: dict  # what a latentcache checkpoint recorded (lambda, steps, training data)
    quality_source: str = "user"  # one of QUALITY_SOURCES
    lmbda: float | None = None  # the rate-distortion λ it was trained with, when known
    lineage: dict | None = None  # fine-tuned codecs: parent weights' sha256, mode, β, γ, epochs

    @property
    def widths(self) -> tuple[int, int]:
        return int(self.model.N), int(self.model.M)

    @property
    def kind(self) -> str:
        """factorized | hyperprior | mean-scale | autoregressive (codec.spec.KINDS)."""
        return model_kind(self.model)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The latent arrays its decoder uses: what a store of it holds."""
        return inputs_of_kind(self.kind)

    def identity(self) -> dict[str, Any]:
        """What a store records (its card) and a training checkpoint compares."""
        n, m = self.widths
        return {
            "arch": self.spec.arch,
            "kind": self.kind,
            "quality": self.spec.quality,
            "quality_source": self.quality_source,
            "metric": self.spec.metric,
            "lambda": self.lmbda,
            "lineage": self.lineage,
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


def _zoo_file(spec: CodecSpec) -> Path:
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
    return cached


def _resolve_recorded(spec: CodecSpec, meta: dict, path: Path) -> tuple[CodecSpec, dict]:
    """A latentcache checkpoint's own arch, quality, metric, λ and lineage; a conflicting
    label the caller gave is refused, naming both values."""
    for name in ("arch", "quality", "metric"):
        asked, recorded = getattr(spec, name), meta.get(name)
        if asked is not None and recorded is not None and asked != recorded:
            raise CodecMismatchError(
                f"codec checkpoint {path} records {name} {recorded}, but {name} {asked} was "
                f"asked for: omit --{name} (the checkpoint's own is used) or pass {recorded}"
            )
    try:
        resolved = replace(
            spec,
            arch=meta.get("arch") or spec.arch or DEFAULT_ARCH,
            quality=meta.get("quality", spec.quality),
            metric=meta.get("metric", spec.metric),
        )
    except ConfigError as exc:
        raise CodecFileError(f"codec checkpoint {path} records an invalid label: {exc}") from None
    lmbda, lineage = meta.get("lambda", meta.get("lmbda")), meta.get("lineage")
    if lmbda is not None and (isinstance(lmbda, bool) or not isinstance(lmbda, (int, float))):
        raise CodecFileError(f"codec checkpoint {path}: its lambda is a {type(lmbda).__name__}")
    if lineage is not None and not (isinstance(lineage, dict) and _is_json_data(lineage)):
        raise CodecFileError(f"codec checkpoint {path}: its lineage is not a dict of plain values")
    provenance = {
        "quality_source": "checkpoint" if meta.get("quality") is not None else "unknown",
        "lmbda": float(lmbda) if lmbda is not None else None,
        "lineage": lineage,
    }
    return resolved, provenance


def _is_json_data(value, depth: int = 0) -> bool:
    """Plain JSON values only (a recorded lineage goes into the store's manifest as is)."""
    if depth > 8:
        return False
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json_data(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_data(v, depth + 1) for k, v in value.items())
    return False


def _check_quality_label(spec: CodecSpec, widths: tuple[int, int], path) -> None:
    """A quality label must name the widths the weights have, as in CompressAI's table."""
    expected = architectures()[spec.arch][spec.quality]
    if expected != tuple(widths):
        same = qualities_with_widths(spec.arch, widths)
        hint = (
            f"these widths are qualities {same[0]}-{same[-1]}: pass the one the weights were "
            f"trained for, or omit --quality"
            if same
            else f"these widths are no quality of {spec.arch}: omit --quality"
        )
        raise CodecMismatchError(
            f"codec checkpoint {path}: the weights have N={widths[0]}, M={widths[1]}, but "
            f"CompressAI's {spec.arch} quality {spec.quality} has N={expected[0]}, "
            f"M={expected[1]}; {hint} (without --quality the card says the quality is unknown)"
        )


def _load_file(spec: CodecSpec, path: Path) -> Codec:
    state_dict, meta = read_weights(path)
    if meta:
        spec, provenance = _resolve_recorded(spec, meta, path)
    else:  # a plain state dict: its keys and shapes say which architecture it is
        spec = replace(spec, arch=spec.arch or detect_arch(state_dict) or DEFAULT_ARCH)
        label = "user" if spec.quality is not None else "unknown"
        provenance = {"quality_source": label, "lmbda": None, "lineage": None}
    widths = check_fits(path, spec.arch, state_dict)
    if not meta and spec.quality is not None:
        _check_quality_label(spec, widths, path)
    return _finish(spec, _build(spec, state_dict, path), meta, **provenance)


def _load_zoo(spec: CodecSpec) -> Codec:
    """The zoo file is named by arch, metric and quality: those labels are the file's own."""
    path = _zoo_file(spec)
    state_dict, _ = read_weights(path)
    widths = check_fits(path, spec.arch, state_dict)
    _check_quality_label(spec, widths, path)
    lmbda = lambda_for(spec.metric, spec.quality)
    return _finish(spec, _build(spec, state_dict, path), {}, "zoo", lmbda, None)


def _build(spec: CodecSpec, state_dict: dict[str, torch.Tensor], path) -> torch.nn.Module:
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    try:
        return _model_class(spec.arch).from_state_dict(state_dict)
    except Exception as exc:  # check_fits has passed: an unusual file; still one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CodecFileError(
            f"codec checkpoint {path}: cannot build {spec.arch} from it: {first[:200]}"
        ) from None


def _finish(
    spec: CodecSpec,
    model: torch.nn.Module,
    extra: dict,
    quality_source: str = "user",
    lmbda: float | None = None,
    lineage: dict | None = None,
) -> Codec:
    model = model.to("cpu").eval()
    for p in model.parameters():
        p.requires_grad_(False)
    sha = state_dict_sha256(model.state_dict())
    return Codec(spec, model, sha, extra, quality_source, lmbda, lineage)


def codec_from_model(
    model: torch.nn.Module,
    spec: CodecSpec | None = None,
    *,
    lmbda: float | None = None,
    lineage: dict | None = None,
) -> Codec:
    """Wrap an in-memory CompressAI model (tests, notebooks, fine-tuning). ``spec.source``
    becomes 'model'; its quality label is the caller's (``quality_source`` 'user'; 'unknown'
    without one), as are ``lmbda`` and ``lineage``. A model without entropy-coder tables is
    ``update(force=True)``d."""
    spec = replace(spec or CodecSpec(source="model"), source="model", checkpoint=None)
    spec = replace(spec, arch=spec.arch or _arch_of_model(model))
    if model.entropy_bottleneck._offset.numel() == 0:  # trained but never update()d
        logger.info("model has no entropy-coder tables; running update(force=True)")
        model.update(force=True)
    widths = (int(model.N), int(model.M))
    if spec.quality is not None and spec.widths != widths:
        logger.warning(
            "model widths N=%d, M=%d are not CompressAI's %s quality %d widths %s",
            *widths,
            spec.arch,
            spec.quality,
            spec.widths,
        )
    label = "user" if spec.quality is not None else "unknown"
    return _finish(spec, model, {}, label, lmbda, lineage)


def _arch_of_model(model: torch.nn.Module) -> str:
    """The zoo name of the model's own class (the hyperprior for a class the zoo lacks)."""
    from compressai.zoo.image import model_architectures

    names = [a for a in architectures() if model_architectures[a] is type(model)]
    return names[0] if names else DEFAULT_ARCH


def load_codec(spec: CodecSpec) -> Codec:
    """Load the codec ``spec`` names. The resolved labels (arch, quality, metric) are the
    weights' own where they record them; errors are one line naming the file and the reason."""
    if spec.source == "model":
        raise ConfigError("source 'model' needs codec_from_model(model), not load_codec")
    if spec.source == "zoo":
        return _load_zoo(spec)
    path = Path(spec.checkpoint) if spec.source == "checkpoint" else DEMO_CODEC_PATH
    if spec.source == "demo" and not path.is_file():
        raise WeightsNotFoundError(f"the demo codec is missing from this install: {path}")
    return _load_file(spec, path)


def load_store_codec(record: dict, checkpoint: str | None = None) -> Codec:
    """The codec a store's manifest records (``store.codec``): the weights file ``checkpoint``
    when given, else the demo codec or the zoo's weights it names. Its weights must be the
    ones the store was encoded with (sha256), else one line names both."""
    if checkpoint:
        codec = load_codec(
            CodecSpec(arch=record["arch"], source="checkpoint", checkpoint=checkpoint)
        )
    elif record.get("source") == "demo":
        codec = load_codec(CodecSpec(source="demo"))
    elif record.get("source") in ("checkpoint", "model"):
        raise ConfigError(
            f"the store was encoded with codec weights {record.get('checkpoint') or '(in memory)'}: pass that file (--codec-checkpoint)"
        )
    else:
        codec = load_codec(
            CodecSpec(
                arch=record["arch"],
                quality=record["quality"],
                metric=record["metric"],
                source="zoo",
            )
        )
    want = record.get("weights_sha256")
    if want and codec.weights_sha256 != want:
        raise ConfigError(
            f"codec weights sha256 {codec.weights_sha256[:12]} are not the store's {str(want)[:12]} ({record.get('arch')} quality={record.get('quality')})"
        )
    return codec


def save_codec_checkpoint(
    path: str | os.PathLike, model: torch.nn.Module, spec: CodecSpec, **extra: Any
) -> Path:
    """Save ``model`` so that ``--checkpoint`` loads it; ``extra`` is kept beside the weights.

    Recognised extras, carried to the card by :func:`load_codec`: ``lambda`` (or ``lmbda``),
    the λ it was trained with, and ``lineage`` for fine-tuned codecs,
    ``{"parent_weights_sha256", "mode", "beta", "gamma", "epochs"}``. The model is
    ``update(force=True)``d first so that the file entropy-codes as saved.
    """
    model.update(force=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "arch": spec.arch or DEFAULT_ARCH,
        "quality": spec.quality,
        "metric": spec.metric,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    path = Path(path)
    with atomic_write(path) as f:
        torch.save(payload, f)
    return path

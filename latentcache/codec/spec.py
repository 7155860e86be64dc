"""Codec specs: architecture, quality, metric and the source of the weights.

No torch at import: the architectures, their qualities and widths are read from
``compressai.zoo`` (``image.cfgs`` and ``image.model_architectures``) the first time a spec is
checked, so ``--help`` stays fast. Every image architecture the zoo can build is accepted:

| kind           | architectures                       | latents a decoder uses               |
|----------------|-------------------------------------|--------------------------------------|
| factorized     | bmshj2018-factorized                | y_hat                                |
| hyperprior     | bmshj2018-hyperprior                | y_hat, scales_hat                    |
| mean-scale     | mbt2018-mean                        | y_hat, scales_hat, means_hat         |
| autoregressive | mbt2018, cheng2020-anchor/-attn     | y_hat, scales_hat, means_hat (context model) |

A spec is what the user asked for. ``None`` for ``arch``, ``quality`` or ``metric`` means "not
given": for the zoo it takes CompressAI's defaults (bmshj2018-hyperprior, 8, mse), which name the
file; for a checkpoint it is read from the file's own record, or stays unknown. The loaded
:class:`~latentcache.codec.load.Codec` carries the resolved spec and where each label came from.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

from latentcache.errors import ConfigError

__all__ = [  # and ARCHITECTURES (module __getattr__: architectures())
    "DEFAULT_ARCH",
    "KINDS",
    "LAMBDAS",
    "METRICS",
    "WEIGHT_SOURCES",
    "CodecSpec",
    "architectures",
    "arch_kind",
    "check_encodable",
    "inputs_of_kind",
    "lambda_for",
    "model_kind",
    "qualities_with_widths",
]

DEFAULT_ARCH = "bmshj2018-hyperprior"
METRICS = ("mse", "ms-ssim")
WEIGHT_SOURCES = ("zoo", "checkpoint", "demo", "model")
# What the decoder of each kind of architecture entropy-decodes y with (the store's inputs).
KINDS: dict[str, tuple[str, ...]] = {
    "factorized": ("y_hat",),
    "hyperprior": ("y_hat", "scales_hat"),
    "mean-scale": ("y_hat", "scales_hat", "means_hat"),
    "autoregressive": ("y_hat", "scales_hat", "means_hat"),
}
# CompressAI's training λ per quality 1..8: its docs' model zoo table (docs/source/zoo.rst,
# "The following loss functions and lambda values were used for training"); the MSE row is
# also compressai.models.vbr's ``lmbda`` list. cheng2020's qualities 1..6 use the first six.
LAMBDAS = {
    "mse": (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800),
    "ms-ssim": (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00),
}


@functools.cache
def architectures() -> dict[str, dict[int, tuple[int, int]]]:
    """CompressAI zoo name -> {quality: (N, M)}, from ``compressai.zoo.image.cfgs``, for every
    image architecture that ``compressai.zoo.image.model_architectures`` builds (cheng2020's
    single width is N = M)."""
    from compressai.zoo import image_models
    from compressai.zoo.image import cfgs, model_architectures

    return {
        name: {int(q): (int(w[0]), int(w[-1])) for q, w in sorted(cfgs[name].items())}
        for name in image_models
        if name in cfgs and name in model_architectures
    }


def __getattr__(name: str):
    if name == "ARCHITECTURES":  # lazily: reading it imports compressai (and torch)
        return architectures()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _kind_of_class(cls) -> str:
    from compressai.models import (
        FactorizedPrior,
        JointAutoregressiveHierarchicalPriors,
        MeanScaleHyperprior,
        ScaleHyperprior,
    )

    for base, kind in (
        (JointAutoregressiveHierarchicalPriors, "autoregressive"),
        (MeanScaleHyperprior, "mean-scale"),
        (ScaleHyperprior, "hyperprior"),
        (FactorizedPrior, "factorized"),
    ):
        if issubclass(cls, base):
            return kind
    raise ConfigError(f"{cls.__name__} is not a CompressAI image codec latentcache can store")


def arch_kind(arch: str) -> str:
    """One of :data:`KINDS` for a zoo architecture name."""
    from compressai.zoo.image import model_architectures

    if arch not in architectures():
        raise ConfigError(f'Invalid architecture "{arch}". Available: {sorted(architectures())}')
    return _kind_of_class(model_architectures[arch])


def model_kind(model) -> str:
    """One of :data:`KINDS` for an in-memory CompressAI model."""
    return _kind_of_class(type(model))


def inputs_of_kind(kind: str) -> tuple[str, ...]:
    """The latent arrays a decoder of ``kind`` uses (a store's ``inputs``)."""
    return KINDS[kind]


def lambda_for(metric: str, quality: int) -> float:
    """CompressAI's λ for ``metric`` at ``quality`` (1..8)."""
    if metric not in LAMBDAS:
        raise ConfigError(f'Invalid metric "{metric}", should be one of {sorted(LAMBDAS)}')
    if not 1 <= quality <= 8:
        raise ConfigError(f'Invalid quality "{quality}", should be between (1, 8)')
    return LAMBDAS[metric][quality - 1]


def check_encodable(arch: str | None, scales_repr: str | None = None) -> None:
    """Refuse, before any work, a store an architecture cannot make: ``z_hat`` stores recompute
    σ̂ with ``h_s`` alone, which only a scale hyperprior's decoder does."""
    if arch is None or scales_repr != "z_hat":
        return
    kind = arch_kind(arch)
    if kind != "hyperprior":
        raise ConfigError(
            f"--scales z_hat recomputes scales_hat from z_hat with h_s, which {arch} "
            f"({kind}) does not do: use index, float16 or float32"
        )


def qualities_with_widths(arch: str, widths: tuple[int, int]) -> list[int]:
    """The zoo qualities of ``arch`` whose (N, M) are ``widths`` (empty for custom widths)."""
    return [q for q, nm in architectures().get(arch, {}).items() if nm == tuple(widths)]


@dataclass(frozen=True)
class CodecSpec:
    """Names a codec. ``source`` says where the weights come from:

    - ``zoo``: CompressAI's pretrained weights (torch hub cache, downloaded when online);
    - ``checkpoint``: a local file (a plain CompressAI state dict or a latentcache checkpoint);
    - ``demo``: the small demo codec shipped with the package;
    - ``model``: an in-memory model passed by the caller (tests, notebooks).
    """

    arch: str | None = None
    quality: int | None = None
    metric: str | None = None
    source: str = "zoo"
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        if self.source not in WEIGHT_SOURCES:
            raise ConfigError(
                f'Invalid weight source "{self.source}", should be one of {WEIGHT_SOURCES}'
            )
        if self.source == "zoo":  # the zoo file is named by all three: fill CompressAI's defaults
            for name, default in (("arch", DEFAULT_ARCH), ("quality", 8), ("metric", "mse")):
                if getattr(self, name) is None:
                    object.__setattr__(self, name, default)
        if self.arch is not None and self.arch not in architectures():
            raise ConfigError(
                f'Invalid architecture "{self.arch}". Available: {sorted(architectures())}'
            )
        qualities = architectures()[self.arch] if self.arch else range(1, 9)
        if self.quality is not None and (
            not isinstance(self.quality, int) or self.quality not in qualities
        ):
            raise ConfigError(
                f'Invalid quality "{self.quality}", should be between '
                f"({min(qualities)}, {max(qualities)})"
            )
        if self.metric is not None and self.metric not in METRICS:
            raise ConfigError(f'Invalid metric "{self.metric}", should be one of {METRICS}')
        if (self.source == "checkpoint") != (self.checkpoint is not None):
            raise ConfigError("a checkpoint path is needed exactly when source is 'checkpoint'")

    @property
    def widths(self) -> tuple[int, int] | None:
        """(N, M) of the zoo model at this quality (None when arch or quality is not known)."""
        if self.arch is None or self.quality is None:
            return None
        return architectures()[self.arch][self.quality]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CodecSpec:
        return cls(
            **{k: d[k] for k in ("arch", "quality", "metric", "source", "checkpoint") if k in d}
        )

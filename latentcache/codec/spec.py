"""Codec specs: architecture, quality, metric and the source of the weights (no torch here).

A spec is what the user asked for. ``None`` for ``arch``, ``quality`` or ``metric`` means "not
given": for the zoo it takes CompressAI's defaults (bmshj2018-hyperprior, 8, mse), which name the
file; for a checkpoint it is read from the file's own record, or stays unknown. The loaded
:class:`~latentcache.codec.load.Codec` carries the resolved spec and where each label came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from latentcache.errors import ConfigError

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_ARCH",
    "LAMBDAS",
    "METRICS",
    "WEIGHT_SOURCES",
    "CodecSpec",
    "ENCODE_ARCHITECTURES",
    "check_encodable",
    "lambda_for",
    "qualities_with_widths",
]

# CompressAI zoo names -> (N, M) per quality, as in compressai.zoo.image.cfgs (1.2.x).
ARCHITECTURES: dict[str, dict[int, tuple[int, int]]] = {
    "bmshj2018-hyperprior": {q: (128, 192) if q <= 5 else (192, 320) for q in range(1, 9)},
    "mbt2018-mean": {q: (128, 192) if q <= 4 else (192, 320) for q in range(1, 9)},
}
# The architectures encode and the stores support: mbt2018-mean's y is coded around means_hat
# (h_s gives scales and means), which the store layouts do not hold yet. Codec training and
# codec eval take every architecture above.
ENCODE_ARCHITECTURES = ("bmshj2018-hyperprior",)
DEFAULT_ARCH = "bmshj2018-hyperprior"
METRICS = ("mse", "ms-ssim")
WEIGHT_SOURCES = ("zoo", "checkpoint", "demo", "model")
# CompressAI's training λ per quality 1..8: its docs' model zoo table (docs/source/zoo.rst,
# "The following loss functions and lambda values were used for training"); the MSE row is
# also compressai.models.vbr's ``lmbda`` list.
LAMBDAS = {
    "mse": (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800),
    "ms-ssim": (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00),
}


def lambda_for(metric: str, quality: int) -> float:
    """CompressAI's λ for ``metric`` at ``quality`` (1..8)."""
    if metric not in LAMBDAS:
        raise ConfigError(f'Invalid metric "{metric}", should be one of {sorted(LAMBDAS)}')
    if not 1 <= quality <= 8:
        raise ConfigError(f'Invalid quality "{quality}", should be between (1, 8)')
    return LAMBDAS[metric][quality - 1]


def check_encodable(arch: str | None) -> None:
    """Refuse, before any work, an architecture that encode cannot store."""
    if arch is not None and arch not in ENCODE_ARCHITECTURES:
        raise ConfigError(
            f'encode does not support architecture "{arch}" yet (its latents need means_hat, '
            f"which the stores do not hold). Supported: {list(ENCODE_ARCHITECTURES)}"
        )


def qualities_with_widths(arch: str, widths: tuple[int, int]) -> list[int]:
    """The zoo qualities of ``arch`` whose (N, M) are ``widths`` (empty for custom widths)."""
    return [q for q, nm in ARCHITECTURES.get(arch, {}).items() if nm == tuple(widths)]


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
        if self.arch is not None and self.arch not in ARCHITECTURES:
            raise ConfigError(
                f'Invalid architecture "{self.arch}". Available: {sorted(ARCHITECTURES)}'
            )
        if self.quality is not None and (
            not isinstance(self.quality, int) or not 1 <= self.quality <= 8
        ):
            raise ConfigError(f'Invalid quality "{self.quality}", should be between (1, 8)')
        if self.metric is not None and self.metric not in METRICS:
            raise ConfigError(f'Invalid metric "{self.metric}", should be one of {METRICS}')
        if (self.source == "checkpoint") != (self.checkpoint is not None):
            raise ConfigError("a checkpoint path is needed exactly when source is 'checkpoint'")

    @property
    def widths(self) -> tuple[int, int] | None:
        """(N, M) of the zoo model at this quality (None when arch or quality is not known)."""
        if self.arch is None or self.quality is None:
            return None
        return ARCHITECTURES[self.arch][self.quality]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CodecSpec:
        return cls(
            **{k: d[k] for k in ("arch", "quality", "metric", "source", "checkpoint") if k in d}
        )

"""Codec specs: architecture, quality, metric and the source of the weights (no torch here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from latentcache.errors import ConfigError

__all__ = ["ARCHITECTURES", "WEIGHT_SOURCES", "CodecSpec"]

# CompressAI zoo names -> (N, M) per quality, as in compressai.zoo.image.cfgs.
ARCHITECTURES: dict[str, dict[int, tuple[int, int]]] = {
    "bmshj2018-hyperprior": {q: (128, 192) if q <= 5 else (192, 320) for q in range(1, 9)},
    "mbt2018-mean": {q: (128, 192) if q <= 4 else (192, 320) for q in range(1, 9)},
}
METRICS = ("mse", "ms-ssim")
WEIGHT_SOURCES = ("zoo", "checkpoint", "demo", "model")


@dataclass(frozen=True)
class CodecSpec:
    """Names a codec. ``source`` says where the weights come from:

    - ``zoo``: CompressAI's pretrained weights (torch hub cache, downloaded when online);
    - ``checkpoint``: a local file (a plain CompressAI state dict or a latentcache checkpoint);
    - ``demo``: the small demo codec shipped with the package;
    - ``model``: an in-memory model passed by the caller (tests, notebooks).
    """

    arch: str = "bmshj2018-hyperprior"
    quality: int = 8
    metric: str = "mse"
    source: str = "zoo"
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(
                f'Invalid architecture "{self.arch}". Available: {sorted(ARCHITECTURES)}'
            )
        if not isinstance(self.quality, int) or not 1 <= self.quality <= 8:
            raise ConfigError(f'Invalid quality "{self.quality}", should be between (1, 8)')
        if self.metric not in METRICS:
            raise ConfigError(f'Invalid metric "{self.metric}", should be one of {METRICS}')
        if self.source not in WEIGHT_SOURCES:
            raise ConfigError(
                f'Invalid weight source "{self.source}", should be one of {WEIGHT_SOURCES}'
            )
        if (self.source == "checkpoint") != (self.checkpoint is not None):
            raise ConfigError("a checkpoint path is needed exactly when source is 'checkpoint'")

    @property
    def widths(self) -> tuple[int, int]:
        """(N, M) of the zoo model at this quality."""
        return ARCHITECTURES[self.arch][self.quality]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CodecSpec:
        return cls(
            **{k: d[k] for k in ("arch", "quality", "metric", "source", "checkpoint") if k in d}
        )

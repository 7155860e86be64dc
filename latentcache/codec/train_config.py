"""A codec training run's configuration and its records (``codec train``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from latentcache.codec.spec import ARCHITECTURES, CodecSpec, lambda_for
from latentcache.errors import ConfigError

__all__ = ["INITS", "TrainConfig", "TrainResult", "TrainingImage"]

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

"""The training config: a frozen dataclass that validates itself and round-trips JSON
(saved as ``config.json`` in the run folder and inside every checkpoint).

::

    TrainConfig defaults  <  --preset's settings  <  options given explicitly
      (:meth:`TrainConfig.from_options`; the CLI passes only the options a user typed)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from latentcache.errors import ConfigError
from latentcache.store.location import require_worker_access
from latentcache.train.augment import AugmentConfig
from latentcache.train.cache import CACHES
from latentcache.train.data import FORMATS
from latentcache.train.speed import COMPILE_MODES

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES", "DEVICES", "PRETRAINED", "RUN_RECORD_KEYS"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "poly", "constant")
DEVICES = ("auto", "cpu", "cuda")
PRETRAINED = (
    "auto",
    "require",
    "off",
)  # ImageNet trunk: when cached (else WARNING), or refuse, or never
# lr and weight decay that go with an optimizer chosen without them
OPTIMIZER_DEFAULTS = {
    "sgd": {"lr": 0.05, "weight_decay": 1e-4},
    "adamw": {"lr": 1e-3, "weight_decay": 0.05},
}
RUN_RECORD_KEYS = ("initialised_from",)  # written beside the config in config.json, not options


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``latentcache train`` needs; ``None`` splits are chosen from the store."""

    store: str
    out: str
    model: str = "cresnet39"
    model_kwargs: dict = field(default_factory=dict)
    preset: str | None = None  # the preset the settings came from (latentcache.train.presets)
    pretrained: str = "auto"  # ImageNet weights for models that have them (PRETRAINED)
    init: str | None = None  # another run's folder or checkpoint: its weights, a new head
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    head_lr_mult: float = 1.0  # the model's new head (model.head_modules) learns at lr x this
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    step_size: int = 10  # epochs between decays of the "step" schedule
    gamma: float = 0.1
    label_smoothing: float = 0.0
    format: str = "zarr"
    train_split: str | None = None
    eval_split: str | None = None
    resize: int | None = 32
    crop: int | None = 28
    flip: bool = True
    buffer_size: int = 256
    workers: int = 0
    device: str = "auto"
    amp: bool = True  # CUDA only: bfloat16 where supported, else float16 + GradScaler
    channels_last: bool = True  # CUDA only
    cache: str = "off"  # the splits held whole in memory: off | host | device (CACHES)
    compile_mode: str = "off"  # torch.compile mode (COMPILE_MODES; latentcache.train.speed)
    cudnn_benchmark: bool = True  # CUDA only
    fused_optimizer: bool = True  # CUDA only: SGD/AdamW fused=True
    seed: int = 0
    max_batches: int | None = None  # cap on steps per epoch (smoke runs, benchmarks)
    codec_checkpoint: str | None = None  # z_hat stores encoded with a weights file: that file
    progress: bool = True
    resume: bool = False
    command: str = ""  # the command line that made the run, for the record

    def __post_init__(self) -> None:
        self._check_choice("optimizer", OPTIMIZERS)
        self._check_choice("schedule", SCHEDULES)
        self._check_choice("format", FORMATS)
        self._check_choice("device", DEVICES)
        self._check_choice("pretrained", PRETRAINED)
        self._check_choice("cache", CACHES)
        self._check_choice("compile_mode", COMPILE_MODES)
        for name, low in (
            ("epochs", 1),
            ("batch_size", 1),
            ("buffer_size", 1),
            ("workers", 0),
            ("step_size", 1),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"Invalid {name} {value!r}, should be an integer >= {low}")
        if not self.lr > 0:
            raise ConfigError(f"Invalid lr {self.lr!r}, should be > 0")
        if not self.head_lr_mult > 0:
            raise ConfigError(f"Invalid head_lr_mult {self.head_lr_mult!r}, should be > 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(
                f"Invalid label_smoothing {self.label_smoothing!r}, should be in [0, 1)"
            )
        if self.max_batches is not None and self.max_batches < 1:
            raise ConfigError(f"Invalid max_batches {self.max_batches!r}, should be >= 1 or None")
        AugmentConfig(resize=self.resize, crop=self.crop, flip=self.flip)  # validates
        require_worker_access(self.store, self.workers)

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        if getattr(self, name) not in choices:
            raise ConfigError(
                f'Invalid {name} "{getattr(self, name)}", should be one of {list(choices)}'
            )

    @property
    def augment(self) -> AugmentConfig:
        return AugmentConfig(resize=self.resize, crop=self.crop, flip=self.flip)

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_options(cls, options: dict, preset: str | None = None) -> TrainConfig:
        """Defaults, then ``preset``'s settings, then ``options`` (only those given).

        An optimizer other than the preset's (or the default's), given without ``lr`` /
        ``weight_decay``, brings its own (:data:`OPTIMIZER_DEFAULTS`). ``model_kwargs`` add
        to the preset's, unless another model is chosen (then the preset's are dropped).
        """
        from latentcache.train.presets import resolve_preset

        settings = resolve_preset(preset)
        if options.get("model", settings.get("model")) != settings.get("model"):
            settings.pop("model_kwargs", None)
        if "model_kwargs" in options:
            options = {
                **options,
                "model_kwargs": {**settings.get("model_kwargs", {}), **options["model_kwargs"]},
            }
        if options.get("optimizer", settings.get("optimizer", "sgd")) != settings.get(
            "optimizer", "sgd"
        ):
            extra = OPTIMIZER_DEFAULTS.get(options["optimizer"], {})
            settings |= {k: v for k, v in extra.items() if k not in options}
        return cls.from_dict({**settings, **options})

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = {k: v for k, v in d.items() if k not in RUN_RECORD_KEYS}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"Unknown train config keys {unknown}; valid: {sorted(known)}")
        return cls(**d)

"""The fine-tuning config: a frozen dataclass that validates itself and round-trips JSON
(saved as ``finetune.json`` in the output folder and inside ``state.pt``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from latentcache.codec.spec import CodecSpec
from latentcache.errors import ConfigError
from latentcache.store.scales import DEFAULT_SCALES_REPR, SCALES_REPRS

__all__ = ["FinetuneConfig", "MODES", "CLASSIFIER_OPTIMIZERS", "CLASSIFIER_BN"]

# mode -> (codec trains, classifier trains): chamain2021's T-FT, C-FT and J-FT
MODES = {"task": (False, True), "codec": (True, False), "joint": (True, True)}
CLASSIFIER_OPTIMIZERS = ("adam", "sgd")
# the classifier's BatchNorm running statistics while it trains; "auto": fixed while the codec
# trains (J-FT), updated otherwise (T-FT). Fixed, train and test normalise alike: with batch
# statistics a jointly trained codec and classifier can code classes relative to the batch.
CLASSIFIER_BN = ("auto", "update", "fixed")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything ``latentcache finetune`` needs.

    ``classifier`` is a ``latentcache train`` run folder trained on the parent codec's store;
    it may be None only in ``codec`` mode, where the loss is then rate (+ distortion) alone
    (torfason2018's control: fine-tune the codec alone, retrain a classifier from scratch).
    """

    dataset: str
    out: str
    mode: str = "joint"
    classifier: str | None = None
    codec: CodecSpec = field(default_factory=CodecSpec)
    data_root: str | None = None
    dataset_options: dict = field(default_factory=dict)
    beta: float = 1.0  # weight of the rate R (bits per pixel, likelihoods of y~ and z~)
    gamma: float = 0.0  # weight of lambda * 255^2 * MSE(g_s(y_hat), x); > 0 also trains g_s
    lmbda: float | None = None  # None: the parent checkpoint's, else CompressAI's table
    epochs: int = 5
    codec_epochs: int | None = None  # the codec trains in the first N epochs only (None: all)
    batch_size: int = 16
    lr: float = 1e-4  # Adam on g_a, h_a, h_s, entropy bottleneck (and g_s when gamma > 0)
    classifier_lr: float | None = None  # None: lr
    classifier_optimizer: str = "adam"
    momentum: float = 0.9  # sgd only
    classifier_bn: str = "auto"
    aux_lr: float = 1e-3  # the entropy bottleneck's quantiles, on their own Adam
    clip_max_norm: float = 1.0  # on the codec's gradients; 0: off
    scales_repr: str = DEFAULT_SCALES_REPR  # "index": sigma-hat quantised to the scale table
    train_split: str = "train"
    eval_split: str | None = None  # None: validate, val or test, whichever exists
    max_batches: int | None = None  # cap on steps per epoch (smoke runs, tests)
    workers: int = 0
    device: str = "auto"
    amp: bool = True  # CUDA only
    seed: int = 0
    resume: bool = False
    progress: bool = True
    preset: str | None = None
    command: str = ""

    def __post_init__(self) -> None:
        self._choice("mode", MODES)
        self._choice("classifier_optimizer", CLASSIFIER_OPTIMIZERS)
        self._choice("classifier_bn", CLASSIFIER_BN)
        self._choice("scales_repr", SCALES_REPRS)
        self._choice("device", DEVICES)
        for name, low in (("epochs", 1), ("batch_size", 1), ("workers", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"Invalid {name} {value!r}, should be an integer >= {low}")
        for name in ("beta", "gamma", "clip_max_norm"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"Invalid {name} {getattr(self, name)!r}, should be >= 0")
        for name in ("lr", "aux_lr", "classifier_lr", "lmbda"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"Invalid {name} {value!r}, should be > 0")
        for name in ("codec_epochs", "max_batches"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"Invalid {name} {value!r}, should be an integer >= 1 or None")
        self._check_classifier()

    def _choice(self, name: str, choices) -> None:
        if getattr(self, name) not in choices:
            raise ConfigError(
                f'Invalid {name} "{getattr(self, name)}", should be one of {list(choices)}'
            )

    def _check_classifier(self) -> None:
        if self.classifier is not None:
            return
        if self.mode != "codec":
            raise ConfigError(
                f"mode {self.mode!r} needs --classifier RUN_DIR (a `latentcache train` run "
                "trained on the parent codec's store)"
            )
        if self.beta == 0 and self.gamma == 0:
            raise ConfigError(
                "codec mode without a classifier has no task term: give beta > 0 or gamma > 0"
            )

    @property
    def trains_codec(self) -> bool:
        return MODES[self.mode][0]

    @property
    def trains_classifier(self) -> bool:
        return MODES[self.mode][1]

    @property
    def trains_g_s(self) -> bool:
        """g_s only reaches the loss through the distortion term."""
        return self.trains_codec and self.gamma > 0

    def codec_trains_in(self, epoch: int) -> bool:
        """Epochs count from 0; chamain2021's J-FT trains the task model one epoch longer."""
        return self.trains_codec and (self.codec_epochs is None or epoch < self.codec_epochs)

    def bn_updates_in(self, epoch: int) -> bool:
        """Whether the classifier's BatchNorm running statistics move in this epoch."""
        if not self.trains_classifier or self.classifier_bn == "fixed":
            return False
        return self.classifier_bn == "update" or not self.codec_trains_in(epoch)

    def replace(self, **changes) -> FinetuneConfig:
        return FinetuneConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"Unknown finetune config keys {unknown}; valid: {sorted(known)}")
        d = dict(d)
        if isinstance(d.get("codec"), dict):
            d["codec"] = CodecSpec.from_dict(d["codec"])
        return cls(**d)

"""The papers' fine-tuning settings, by name: a plain dict of :class:`Preset`.

::

    chamain2021-tft-q{1,2,4}             T-FT: task model only, SGD 0.01, 6 epochs (Sec. 4.2)
    chamain2021-cft-q{q}-b{beta}         C-FT, Eq. 2: Table 1's (q, beta), Adam 1e-4, 6 epochs (4.3)
    chamain2021-jft-q{q}-b{beta}         J-FT, Eq. 3: codec 5 epochs + task model 6 (4.4)
    gupta2024-joint                      Table 4: encoder and cResNet-39 jointly, task loss only
    torfason2018-control                 Sec. 6.1: codec alone on its own RD loss; then a new
                                         classifier trained from scratch on the re-encoded store

A preset fills the options of :class:`~latentcache.finetune.config.FinetuneConfig` it names;
options given explicitly win. Settings the paper does not state are marked in ``note``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from latentcache.errors import ConfigError

__all__ = ["Preset", "PRESETS", "CHAMAIN2021_POINTS", "register_preset", "get_preset"]

# chamain2021 Table 1: codec quality q and control parameter beta of C-FT and J-FT
CHAMAIN2021_POINTS = ((1, 1.0), (2, 0.6675), (4, 0.3186), (4, 0.1))


@dataclass(frozen=True)
class Preset:
    """Named settings; ``options`` are FinetuneConfig fields (plus ``quality``)."""

    name: str
    paper: str
    options: dict
    note: str = ""
    # what follows the fine-tuning in the paper: "scratch" = train a new classifier on the
    # re-encoded store (torfason2018's control); None = evaluate the fine-tuned classifier
    then_train: str | None = None
    published: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    if preset.name in PRESETS:
        raise ValueError(f'Preset "{preset.name}" is already registered')
    PRESETS[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f'Unknown preset "{name}". Available: {sorted(PRESETS)}')
    return PRESETS[name]


def _chamain2021() -> None:
    paper = "chamain2021"
    for q in sorted({q for q, _ in CHAMAIN2021_POINTS}):
        register_preset(
            Preset(
                f"{paper}-tft-q{q}",
                paper,
                {
                    "mode": "task",
                    "quality": q,
                    "epochs": 6,
                    "classifier_optimizer": "sgd",
                    "classifier_lr": 0.01,
                },
                "Sec. 4.2: stochastic gradient, lr 0.01, 6 epochs (momentum not stated: 0.9)",
            )
        )
    for q, beta in CHAMAIN2021_POINTS:
        register_preset(
            Preset(
                f"{paper}-cft-q{q}-b{beta:g}",
                paper,
                {"mode": "codec", "quality": q, "beta": beta, "epochs": 6, "lr": 1e-4},
                "Sec. 4.3 and Table 1: Adam 1e-4, 6 epochs (batch 2 on COCO; ours: --batch-size)",
            )
        )
        register_preset(
            Preset(
                f"{paper}-jft-q{q}-b{beta:g}",
                paper,
                {
                    "mode": "joint",
                    "quality": q,
                    "beta": beta,
                    "epochs": 6,
                    "codec_epochs": 5,
                    "lr": 1e-4,
                    "classifier_optimizer": "sgd",
                    "classifier_lr": 0.01,
                },
                "Sec. 4.4: codec and task model 5 epochs with the optimizers of 4.3 (Adam 1e-4) "
                "and 4.2 (SGD 0.01), then the task model alone one more epoch",
            )
        )


def _gupta2024() -> None:
    register_preset(
        Preset(
            "gupta2024-joint",
            "gupta2024",
            {"mode": "joint", "beta": 0.0, "gamma": 0.0, "epochs": 5, "lr": 1e-4},
            "Sec. 2.3-2.4: encoder and cResNet-39-dual trained jointly on the task loss alone "
            "(their reconstruction term diverged); optimizer, lr and epochs not stated: "
            "Adam 1e-4, 5 epochs chosen here",
            published={
                "dataset": "minc",
                "top1_frozen": {1: 13.88, 4: 43.58, 8: 61.36},
                "top1_joint": {1: 66.26, 4: 67.13, 8: 68.28},
            },
        )
    )


def _torfason2018() -> None:
    register_preset(
        Preset(
            "torfason2018-control",
            "torfason2018",
            {"mode": "codec", "beta": 1.0, "gamma": 1.0, "epochs": 9},
            "Sec. 6.1 control: the compression network fine-tuned alone on its own loss "
            "(here CompressAI's lambda*255^2*MSE + bpp at the codec's lambda), 9 epochs as A.8 "
            "(their SGD 0.0025 /10 every 3 epochs; here Adam 1e-4); then a cResNet trained "
            "from scratch on the re-encoded store (`latentcache train`)",
            then_train="scratch",
        )
    )


_chamain2021()
_gupta2024()
_torfason2018()

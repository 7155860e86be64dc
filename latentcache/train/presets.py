"""Training presets: the papers' hyper-parameters, by name (``latentcache train --preset``).

::

    PRESETS["gupta2024"] ─► Preset(reproduces, source, settings) ─► TrainConfig fields
    TrainConfig defaults  <  preset settings  <  options given explicitly on the command line

Each preset is frozen data; ``docs/presets.md`` prints every setting of every preset, and a
test parses that page and checks it against :func:`resolve_preset`, so the page and the
code cannot drift. Settings a paper does not state are marked as the source code's (for
gupta2024, the paper's repository) or left at latentcache's defaults, and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from latentcache.errors import ConfigError

__all__ = ["Preset", "PRESETS", "resolve_preset", "list_presets"]


@dataclass(frozen=True)
class Preset:
    """A named set of :class:`~latentcache.train.config.TrainConfig` fields."""

    name: str
    reproduces: str  # the paper's table(s) these settings produced
    source: str  # where each setting comes from
    settings: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))


def _preset(name: str, reproduces: str, source: str, **settings) -> Preset:
    return Preset(name, reproduces, source, MappingProxyType(settings))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _preset(
            "gupta2024",
            "Gupta et al. 2024, Tables 1, 3 and 4: dual-stem cResNet-39 on y_hat and sigma-hat "
            "of bmshj2018-hyperprior at qualities 1/4/8 (MINC-2500 split 1, RESISC-45, RSSCN7)",
            "§2.3 (ImageNet ResNet-50 trunk; resize 32, random crop 28, horizontal flip); the "
            "paper's code (baseline/downstream_model.py, baseline_experiment.py) for the "
            "optimizer, schedule, epochs, batch size and the stem it actually ran: width M and "
            "torchvision's stride-2 layer2 (Table 2 draws width 32: --model-opt stem_width=32)",
            model="cresnet39-dual",
            model_kwargs={"stem_width": "M", "layer2_stride": 2},
            pretrained="require",
            epochs=30,
            batch_size=32,
            optimizer="sgd",
            lr=0.01,
            momentum=0.9,
            nesterov=False,
            weight_decay=5e-4,
            schedule="step",
            step_size=10,
            gamma=0.1,
            label_smoothing=0.0,
            resize=32,
            crop=28,
            flip=True,
        ),
        _preset(
            "torfason2018",
            "Torfason et al. 2018, Table 2: cResNet-51 on the compressed representation, "
            "trained from scratch for 28 epochs",
            "Appendix A.4: SGD, momentum 0.9, weight decay 1e-4, batch 64, lr 0.025 divided by "
            "10 at epochs 8, 16 and 24, 28 epochs; random mirroring and random 28x28 crops "
            "(no resize); networks trained from scratch (TF-Slim ResNet: no zero-init residuals)",
            model="cresnet51",
            model_kwargs={"zero_init_residual": False},
            pretrained="off",
            epochs=28,
            batch_size=64,
            optimizer="sgd",
            lr=0.025,
            momentum=0.9,
            nesterov=False,
            weight_decay=1e-4,
            schedule="step",
            step_size=8,
            gamma=0.1,
            label_smoothing=0.0,
            resize=None,
            crop=28,
            flip=True,
        ),
        _preset(
            "torfason2018-seg",
            "Torfason et al. 2018, Table 2 (mIoU): cResNet-51-d with an ASPP head at rates "
            "{6, 12, 18, 24} on PASCAL VOC 2012 + SBD (train_aug), validated on VOC val",
            "Appendix A.5 (DeepLab's settings, Chen et al. 2016): batch 10, 20k iterations "
            "(about 19 epochs of train_aug's 10,582 images), SGD momentum 0.9, lr 0.001 with "
            "the poly policy (power 0.9), weight decay 5e-4, random mirroring and random crops "
            "of 320x320 pixels = 20x20 cells of a 16x codec (their codec's 40x40 were 8x); "
            "latentcache steps the poly policy per epoch; the new classifier layers learn at "
            "10x the lr (DeepLab's fc8; here the whole DeepLab head)",
            model="cresnet51-d",
            pretrained="off",
            epochs=19,
            batch_size=10,
            optimizer="sgd",
            lr=0.001,
            head_lr_mult=10.0,
            momentum=0.9,
            nesterov=False,
            weight_decay=5e-4,
            schedule="poly",
            label_smoothing=0.0,
            resize=None,
            crop=20,
            flip=True,
        ),
        _preset(
            "codevilla2021-det",
            "Codevilla et al. 2021, Table 1 (detection): Faster R-CNN heads on an sResNet-101 "
            "backbone fed latents, on Pascal VOC 07+12 trainval, tested on VOC07 test",
            "§3.3 gives the architecture and the ImageNet initialisation of the trunk but no "
            "schedule; the schedule is their few-shot code base's (TFA, Wang et al. 2020: "
            "Detectron2's VOC setting): SGD momentum 0.9, weight decay 1e-4, batch 16, lr 0.02, "
            "18k iterations (about 17 epochs of the 16,551 images) with lr / 10 at 12k (epoch "
            "12), horizontal flips on whole images (no crop)",
            model="fasterrcnn-sresnet101",
            pretrained="auto",
            epochs=17,
            batch_size=16,
            optimizer="sgd",
            lr=0.02,
            momentum=0.9,
            nesterov=False,
            weight_decay=1e-4,
            schedule="step",
            step_size=12,
            gamma=0.1,
            label_smoothing=0.0,
            resize=None,
            crop=None,
            flip=True,
        ),
    )
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def resolve_preset(name: str | None) -> dict:
    """The TrainConfig fields a preset sets (``{}`` for None), plus ``preset=name``."""
    if name is None:
        return {}
    if name not in PRESETS:
        raise ConfigError(f'Unknown preset "{name}". Available: {list_presets()}')
    settings = {
        k: (dict(v) if isinstance(v, dict) else v) for k, v in PRESETS[name].settings.items()
    }
    return {**settings, "preset": name}

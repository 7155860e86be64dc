"""The loaded pieces of a fine-tuning run: dataset, parent codec, trainable copy, classifier.

::

    FinetuneConfig ─► build_index(dataset) ─► eval split
      │ load_codec(parent) ─► trainable copy       classifier run (last.pt) ─► classifier
      │   (the parent's codec identity must match the classifier's)
      ▼
    Parts (+ the classifier's own normalisation and augmentation: make_transform)
"""

from __future__ import annotations

import copy
import logging

import torch

from latentcache.codec.spec import lambda_for
from latentcache.errors import CodecMismatchError, ConfigError
from latentcache.finetune.config import FinetuneConfig
from latentcache.finetune.data import choose_eval_split
from latentcache.finetune.objective import check_architecture
from latentcache.finetune.pixels import PixelTransform, build_pixel_classifier, is_pixel_run

__all__ = ["Parts", "build_classifier", "load_parts", "make_transform", "resolve_lambda"]

logger = logging.getLogger(__name__)


class Parts:
    """The loaded pieces of a run: dataset, parent codec, trainable codec, classifier."""

    def __init__(self, config: FinetuneConfig, device: torch.device) -> None:
        from latentcache.codec.load import load_codec
        from latentcache.datasets import build_index

        self.config, self.device = config, device
        self.index = build_index(config.dataset, config.data_root, **config.dataset_options)
        self.parent = load_codec(config.codec)
        check_architecture(self.parent.model)
        self.lmbda, self.lmbda_source = resolve_lambda(config, self.parent)
        logger.info("lambda %s: %s", _format_lambda(self.lmbda), self.lmbda_source)
        self.model = copy.deepcopy(self.parent.model).to(device)
        self.classifier_state = _load_classifier_state(config, self.parent, self.index)
        self.pixels = is_pixel_run(self.classifier_state)  # T-FT of a decoded-pixel classifier
        if self.pixels and config.mode != "task":
            raise ConfigError(
                f"classifier {config.classifier} reads decoded pixels: it fine-tunes in mode "
                f"'task' (codec frozen), not {config.mode!r}"
            )
        self.classifier = None
        self.transform = None
        if self.classifier_state is not None:
            self.classifier = build_classifier(self.classifier_state, self.parent).to(device)
            self.transform = make_transform(self.classifier_state, train=True)
        self.eval_split = choose_eval_split(self.index, config.train_split, config.eval_split)


def _format_lambda(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def resolve_lambda(config: FinetuneConfig, parent) -> tuple[float | None, str]:
    """λ of the distortion term γ·λ·255²·MSE and where it comes from: --lambda, else the
    codec's own (its checkpoint's record; the zoo's table), else CompressAI's table for its
    quality (the MSE row when no metric is known: the term is an MSE). λ enters nothing when
    γ = 0, so it is needed only where γ > 0."""
    spec = parent.spec
    if config.lmbda is not None:
        return float(config.lmbda), "--lambda"
    if parent.lmbda is not None:
        return float(parent.lmbda), "the codec's own record"
    if spec.quality is not None:
        metric = spec.metric or "mse"
        return lambda_for(
            metric, spec.quality
        ), f"CompressAI's table for {metric} quality {spec.quality}"
    if config.gamma == 0:
        return None, "unused (gamma 0)"
    raise ConfigError(
        f"codec {spec.checkpoint or spec.source} records no lambda and no quality; the "
        f"distortion term (gamma {config.gamma:g}) needs one: give --lambda, or --quality for "
        "CompressAI's table value"
    )


def _load_classifier_state(config: FinetuneConfig, parent, index) -> dict | None:
    from latentcache.train.checkpoint import codec_identity, load_checkpoint
    from latentcache.train.evaluate import find_checkpoint

    if config.classifier is None:
        return None
    path = find_checkpoint(config.classifier, "last")
    state = load_checkpoint(path)
    trained_on, parent_id = codec_identity(state["codec"]), codec_identity(parent.identity())
    differ = [k for k in parent_id if k in trained_on and trained_on[k] != parent_id[k]]
    if differ:
        raise CodecMismatchError(
            f"classifier {path} was trained on latents of {_describe(trained_on)}, but the codec "
            f"to fine-tune is {_describe(parent_id)} (differs in {differ})"
        )
    if list(state["classes"]) != list(index.classes):
        raise ConfigError(
            f"classifier {path} knows classes {list(state['classes'])[:5]}... "
            f"({len(state['classes'])}); dataset {index.name!r} has {list(index.classes)[:5]}... "
            f"({len(index.classes)})"
        )
    return state


def _describe(identity: dict) -> str:
    return (
        f"{identity.get('arch')} quality={identity.get('quality')} metric={identity.get('metric')} "
        f"weights_sha256={str(identity.get('weights_sha256'))[:12]}"
    )


def build_classifier(state: dict, codec) -> torch.nn.Module:
    """The classifier of a ``latentcache train`` run (latents) or of a decoded-pixel run."""
    from latentcache.train.models import LATENT_INPUTS, create_classifier

    if is_pixel_run(state):
        return build_pixel_classifier(state)
    cfg = state["config"]
    kwargs = {**cfg.get("model_kwargs", {}), "pretrained": False}
    model = create_classifier(cfg["model"], codec.widths[1], len(state["classes"]), **kwargs)
    bad = [i for i in model.inputs if i not in LATENT_INPUTS]
    if bad:
        raise ConfigError(f"finetune trains latent classifiers; {cfg['model']} takes {bad}")
    model.load_state_dict(state["model"])
    return model


def make_transform(state: dict, train: bool):
    """The classifier's own normalisation (its training store's stats) and augmentation."""
    from latentcache.train.augment import AugmentConfig, LatentStats, LatentTransform

    if is_pixel_run(state):
        return PixelTransform(state, train)
    cfg = state["config"]
    augment = AugmentConfig(resize=cfg["resize"], crop=cfg["crop"], flip=cfg["flip"] and train)
    inputs = state.get("inputs") or list(cfg.get("model_kwargs", {}).get("inputs", ["y_hat"]))
    return LatentTransform(inputs, LatentStats.from_dict(state["stats"]), augment)


def load_parts(config: FinetuneConfig, device: torch.device) -> Parts:
    return Parts(config, device)

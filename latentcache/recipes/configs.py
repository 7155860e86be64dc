"""The one place a recipe becomes each stage's config: EncodeConfig, TrainConfig,
ImageTrainConfig, and the part of a config that keys a stage's cache entry."""

from __future__ import annotations

from dataclasses import fields

from latentcache.errors import ConfigError
from latentcache.recipes.spec import ModelEntry, Recipe, Setting

__all__ = ["codec_spec", "encode_config", "image_train_config", "key_config", "latent_train_config"]

_NOT_CONFIG = ("out", "store", "images", "command", "progress", "resume")


def _none_if_zero(opts: dict) -> dict:
    return {k: (None if k in ("resize", "crop") and v == 0 else v) for k, v in opts.items()}


def latent_train_config(entry: ModelEntry, store: str, out: str, seed: int, resume: bool = False):
    """The TrainConfig of a latent model: the recipe's options, its preset/init/pretrained
    passed through by name, this seed. The one place a recipe becomes a TrainConfig."""
    from latentcache.train.config import TrainConfig

    supported = {f.name for f in fields(TrainConfig)}
    extra = {k: getattr(entry, k) for k in ("preset", "init", "pretrained") if getattr(entry, k)}
    unsupported = sorted(set(extra) - supported)
    if unsupported:
        named = ", ".join(f'{k} "{extra[k]}"' for k in unsupported)
        raise ConfigError(
            f'model "{entry.name}": {named} needs a latentcache whose training accepts it '
            f"(TrainConfig has no {unsupported} field)"
        )
    extra = {k: v for k, v in extra.items() if k != "preset"}
    options = {"progress": False, **_none_if_zero(entry.options), **extra}
    options |= {"store": store, "out": out, "model": entry.model, "seed": seed, "resume": resume}
    if hasattr(TrainConfig, "from_options"):  # defaults < the preset's settings < options
        return TrainConfig.from_options(options, preset=entry.preset)
    return TrainConfig.from_dict(options)


def image_train_config(entry: ModelEntry, recipe: Recipe, images: str | None, out: str, seed: int):
    """The ImageTrainConfig of a pixel baseline (decoded: ``images`` = decode folder)."""
    from latentcache.pixels.train import ImageTrainConfig

    source = "original" if entry.input == "original" else "decoded"
    if entry.preset or entry.init:
        raise ConfigError(
            f'model "{entry.name}": preset/init apply to latent models; give the image '
            "training options of a pixel baseline in its [model.options]"
        )
    options = dict(entry.options)
    if options.get("resize") == 0:
        options["resize"] = None  # the images as they are (segmentation ignores resize)
    if entry.pretrained is not None:
        options["model_kwargs"] = {
            **options.get("model_kwargs", {}),
            "pretrained": entry.pretrained,
        }
    return ImageTrainConfig.from_dict(
        {
            "progress": False,
            **options,
            "source": source,
            "images": images if source == "decoded" else recipe.data_root,
            "dataset": recipe.dataset if source == "original" else None,
            "dataset_options": recipe.dataset_options if source == "original" else {},
            "model": entry.model,
            "out": out,
            "seed": seed,
        }
    )


def key_config(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in _NOT_CONFIG}


def codec_spec(recipe: Recipe, setting: Setting):
    from latentcache.codec.spec import CodecSpec

    # A checkpoint's labels come from its weights (the card never restates a typed label that
    # the weights may contradict); the setting's quality and metric then only name the stage.
    from_file = recipe.codec["source"] == "checkpoint"
    return CodecSpec(
        arch=recipe.codec["arch"],
        quality=None if from_file else setting.quality,
        metric=None if from_file else setting.metric,
        source=recipe.codec["source"],
        checkpoint=recipe.codec.get("checkpoint"),
    )


def encode_config(
    recipe: Recipe, setting: Setting, out: str, overwrite: bool = False, command: str = ""
):
    """The EncodeConfig of a setting's encode stage; ``command``: the `latentcache run` that
    made it (not part of the stage's key)."""
    from latentcache.config import EncodeConfig

    opts = dict(recipe.encode)
    if "formats" in opts:
        opts["formats"] = tuple(opts["formats"])
    return EncodeConfig(
        dataset=recipe.dataset,
        out=out,
        data_root=recipe.data_root,
        dataset_options=recipe.dataset_options,
        codec=codec_spec(recipe, setting),
        overwrite=overwrite,
        command=command,
        **{"workers": 0, **opts},
    )

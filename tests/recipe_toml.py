"""TOML building blocks of the tiny test recipes (tests/test_recipes.py,
tests/test_finetune_recipes.py): the scikit-image textures as an image folder, the tiny real
codec of conftest, a small latent classifier and small pixel baselines."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "FT_OPTS",
    "finetune_entry",
    "head",
    "image_model",
    "latent_model",
    "paper",
    "eval_table",
    "write_recipe",
]

FT_OPTS = '{ batch_size = 4, max_batches = 2, lr = 1e-3, lmbda = 0.0018, device = "cpu" }'


def head(name: str, title: str, data_root: Path, checkpoint: Path, quality: int = 1) -> str:
    """Name, one seed, the image folder, the codec checkpoint at ``quality``, Zarr shards of 4."""
    return f"""
name = "{name}"
title = "{title}"
cites = ["test"]
seeds = [0]

[dataset]
name = "imagefolder"
data_root = "{data_root}"

[codec]
source = "checkpoint"
checkpoint = "{checkpoint}"
qualities = [{quality}]

[encode]
formats = ["zarr"]
shard_size = 4
"""


def latent_model(name: str = "cres", model_kwargs: str = "{ base_width = 4 }") -> str:
    """A cresnet39 on the latents: one epoch on 6x6 crops."""
    return f"""
[[model]]
name = "{name}"
model = "cresnet39"
input = "latents"
[model.options]
epochs = 1
batch_size = 4
resize = 8
crop = 6
device = "cpu"
model_kwargs = {model_kwargs}
"""


def image_model(name: str, input: str, max_batches: int | None = None) -> str:
    """An untrained resnet50 on decoded or original images: one epoch on 24x24 crops."""
    limit = f"max_batches = {max_batches}\n" if max_batches is not None else ""
    return f"""
[[model]]
name = "{name}"
model = "resnet50"
input = "{input}"
[model.options]
epochs = 1
batch_size = 6
resize = 32
crop = 24
{limit}model_kwargs = {{ pretrained = false }}
device = "cpu"
"""


def finetune_entry(name: str, lines: str, options: str = FT_OPTS) -> str:
    """A [[finetune]] with ``lines`` (its keys, one per line) and one epoch of ``options``."""
    return f'\n[[finetune]]\nname = "{name}"\n{lines.strip()}\nepochs = 1\noptions = {options}\n'


def eval_table(batch_size: int = 8) -> str:
    return f'\n[eval]\nsplit = "test"\nbatch_size = {batch_size}\ndevice = "cpu"\n'


def paper(top5: float | None = None) -> str:
    """One reference row for the report (cresnet39 at quality 1)."""
    text = """
[[paper]]
source = "a paper, Table 9"
label = "their row"
model = "cresnet39"
quality = 1
metric = "mse"
top1 = 50.0
"""
    return text + (f"top5 = {top5}\n" if top5 is not None else "")


def write_recipe(path: Path, text: str):
    """Write ``text`` to ``path`` and load it as a recipe."""
    from latentcache.recipes import load_recipe

    path.write_text(text)
    return load_recipe(path)

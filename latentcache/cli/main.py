"""``latentcache`` entry point. Each command lives in its own module, registered below."""

from __future__ import annotations

import importlib

import click

from latentcache import __version__

# (module, attribute) of every top-level command; modules import only click at import time.
COMMANDS = [
    ("latentcache.cli.store_cmd", "encode"),
    ("latentcache.cli.download_cmd", "download"),
    ("latentcache.cli.store_cmd", "inspect"),
    ("latentcache.cli.store_cmd", "verify"),
    ("latentcache.cli.store_cmd", "pull"),
    ("latentcache.cli.store_cmd", "push"),
    ("latentcache.cli.train_cmd", "train"),
    ("latentcache.cli.train_cmd", "evaluate"),
    ("latentcache.cli.codec_cmd", "codec"),
    ("latentcache.cli.finetune_cmd", "finetune"),
    ("latentcache.cli.recipe_cmd", "run"),
    ("latentcache.cli.recipe_cmd", "report"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="latentcache")
def cli() -> None:
    """Encode image datasets into shareable learned-codec latent stores, and learn from them."""


for _module, _attr in COMMANDS:
    cli.add_command(getattr(importlib.import_module(_module), _attr))


def main() -> None:
    cli(prog_name="latentcache")

"""Shared CLI plumbing: error reporting, logging setup, the codec options."""

from __future__ import annotations

import functools
import logging
import shlex
import sys
import warnings

import click

__all__ = [
    "command_line",
    "handle_errors",
    "setup_logging",
    "codec_options",
    "codec_spec_from_options",
]


def handle_errors(fn):
    """Turn latentcache's own errors into one clear line and a non-zero exit, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from latentcache.errors import LatentCacheError

        try:
            return fn(*args, **kwargs)
        except LatentCacheError as exc:
            raise click.ClickException(one_line(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted; re-run the same command to resume", err=True)
            sys.exit(130)

    return wrapper


def one_line(exc: BaseException) -> str:
    """An error's message; one raised in a DataLoader worker comes back with the worker's
    traceback prepended by torch, of which only the original message is kept."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    head, sep, rest = last.partition(": ")
    return rest if sep and head.endswith(type(exc).__name__) else last


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    warnings.filterwarnings(
        "ignore", category=FutureWarning, module="torch.jit"
    )  # compressai's import
    for noisy in ("distributed", "tornado", "asyncio"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def codec_options(fn):
    """--arch, --quality, --metric, --codec, --checkpoint."""
    options = [
        click.option(
            "--arch",
            default=None,
            help="CompressAI zoo architecture [default: bmshj2018-hyperprior; a checkpoint's own].",
        ),
        click.option(
            "--quality",
            "-q",
            type=int,
            default=None,
            help="Codec quality 1..8 [default: 8 for the zoo; a checkpoint's own].",
        ),
        click.option(
            "--metric",
            type=click.Choice(["mse", "ms-ssim"]),
            default=None,
            help="[default: mse for the zoo; a checkpoint's own].",
        ),
        click.option(
            "--codec",
            "codec_source",
            type=click.Choice(["zoo", "demo"]),
            default="zoo",
            show_default=True,
            help="Weights: CompressAI's pretrained zoo (torch hub cache) or the demo codec shipped here.",
        ),
        click.option(
            "--checkpoint",
            type=click.Path(dir_okay=False),
            default=None,
            help="Local codec weights (a CompressAI state dict or a latentcache codec checkpoint).",
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def codec_spec_from_options(arch, quality, metric, codec_source, checkpoint):
    """The codec asked for; labels not given stay None (the weights' own, or the zoo's default)."""
    from latentcache.codec.spec import CodecSpec

    source = "checkpoint" if checkpoint else codec_source
    return CodecSpec(
        arch=arch, quality=quality, metric=metric, source=source, checkpoint=checkpoint
    )


def command_line(ctx: click.Context) -> str:
    """The command as it re-runs: ``latentcache <command>``, the options given (on the command
    line or through the environment) in the command's order, a repeated option once per value,
    then every argument; shell-quoted (``shlex.join``). Options left at their defaults are left
    out, so a re-run resolves the same defaults."""
    from click.core import ParameterSource

    words, arguments = ["latentcache", *ctx.command_path.split()[1:]], []
    for param in ctx.command.params:
        if param.name not in ctx.params:  # --help, --version
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            arguments += _value_words(param, value)
        elif ctx.get_parameter_source(param.name) not in (None, ParameterSource.DEFAULT):
            words += _option_words(param, value)
    if any(a.startswith("-") for a in arguments):
        words.append("--")  # an argument that looks like an option
    return shlex.join(words + arguments)


def _value_words(param: click.Parameter, value) -> list[str]:
    if value is None:
        return []
    if param.nargs != 1:  # a tuple of values (nargs=-1 arguments, nargs=2 options)
        return [str(v) for v in value]
    return [str(value)]


def _option_words(option: click.Option, value) -> list[str]:
    flag = max(option.opts, key=len)
    if option.count:
        return [flag] * int(value or 0)
    if option.is_flag and option.is_bool_flag:
        if value:
            return [flag]
        return [max(option.secondary_opts, key=len)] if option.secondary_opts else []
    if option.is_flag:
        return [flag] if value == option.flag_value else []
    values = value if option.multiple else [value]
    return [w for v in values if v is not None for w in [flag, *_value_words(option, v)]]

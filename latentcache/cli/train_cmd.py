"""``train`` and ``eval``: learn from a latent store, and score a run on a split.

torch is imported inside the commands, so ``latentcache --help`` stays fast.
Under ``torchrun -m latentcache train ...`` every rank runs the command; rank 0 prints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from latentcache.cli.common import command_line, handle_errors, setup_logging

__all__ = ["train", "evaluate", "parse_model_opts", "explicit_options", "train_config"]


def parse_model_opts(items: tuple[str, ...]) -> dict:
    """``("base_width=16", "inputs=[\\"y_hat\\"]")`` -> kwargs; values parsed as JSON when they can be."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--model-opt")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# option name -> TrainConfig field, where they differ
_RENAMED = {"fmt": "format", "model_opt": "model_kwargs", "compile": "compile_mode"}
_CLI_ONLY = ("store", "out", "verbose", "list_models", "channels", "classes", "preset")


def _to_field(name: str, value):
    if name == "model_opt":
        return parse_model_opts(value)
    if name in ("resize", "crop"):
        return value or None  # 0: none
    return value


def explicit_options(ctx: click.Context) -> dict:
    """The options the user gave (not click's defaults), as TrainConfig fields."""
    from click.core import ParameterSource

    given = {
        name: value
        for name, value in ctx.params.items()
        if name not in _CLI_ONLY and ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
    }
    return {_RENAMED.get(k, k): _to_field(k, v) for k, v in given.items()}


def _print_models(store: str | None, channels: int | None, classes: int | None) -> None:
    from latentcache.train.models.listing import describe_models

    inputs, task = None, None
    if store is not None:
        from latentcache.store import open_store

        st = open_store(store)
        channels, classes = channels or st.num_channels, classes or len(st.classes)
        inputs, task = st.inputs, st.task_unit.name
    for line in describe_models(channels or 192, classes or 23, inputs, task):
        click.echo(line)


def train_config(ctx: click.Context):
    """The TrainConfig that ``train``'s parsed options resolve to, with the command that
    re-runs it: latentcache's defaults, then --preset's, then the options given."""
    from latentcache.train import TrainConfig
    from latentcache.train.presets import resolve_preset

    store, out, preset = ctx.params["store"], ctx.params["out"], ctx.params["preset"]
    options = explicit_options(ctx)
    model = options.get("model") or resolve_preset(preset).get("model")
    if model is None:  # the default model of the store's task
        from latentcache.train.loop import default_model

        model = options["model"] = default_model(store)
    options |= {
        "store": store,
        "out": out or str(Path("runs") / f"{Path(store.rstrip('/')).name}-{model}"),
        "command": command_line(ctx),
    }
    return TrainConfig.from_options(options, preset)


@click.command()
@click.argument("store", required=False)  # a folder or a URL (file, memory, http(s), s3, gs)
@click.option(
    "--preset",
    type=click.Choice(["codevilla2021-det", "gupta2024", "torfason2018", "torfason2018-seg"]),
    default=None,
    help="A paper's training settings (docs/presets.md); options given explicitly override it.",
)
@click.option(
    "--model",
    "-m",
    default="cresnet39",
    help="Registered model (see --list-models) [default: the store task's: cresnet39, "
    "cresnet51-d, fasterrcnn-cresnet51].",
)
@click.option(
    "--model-opt",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra model argument, e.g. base_width=16 or stem_width=32.",
)
@click.option(
    "--pretrained",
    type=click.Choice(["auto", "require", "off"]),
    default="auto",
    show_default=True,
    help="ImageNet trunk weights (models that have one): when cached, else random with a warning; required; never.",
)
@click.option(
    "--init",
    default=None,
    metavar="RUN_DIR|FILE",
    help="Start from another run's weights (its best.pt, or a checkpoint file) with a new classification head.",
)
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Run folder [default: runs/<store>-<model>].",
)
@click.option("--batch-size", "-b", type=int, default=64, show_default=True, help="Per rank.")
@click.option(
    "--lr", type=float, default=0.05, help="Learning rate [default: 0.05 for sgd, 1e-3 for adamw]."
)
@click.option(
    "--head-lr-mult",
    type=float,
    default=1.0,
    show_default=True,
    help="The model's new head (segmentation models' DeepLab head) learns at lr x this.",
)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--nesterov/--no-nesterov", default=True, show_default=True, help="SGD only.")
@click.option(
    "--weight-decay", type=float, default=1e-4, help="[default: 1e-4 for sgd, 0.05 for adamw]"
)
@click.option(
    "--schedule",
    type=click.Choice(["cosine", "step", "poly", "constant"]),
    default="cosine",
    show_default=True,
)
@click.option(
    "--step-size",
    type=int,
    default=10,
    show_default=True,
    help="Epochs between decays (step schedule).",
)
@click.option(
    "--gamma", type=float, default=0.1, show_default=True, help="Decay factor (step schedule)."
)
@click.option("--label-smoothing", type=float, default=0.0, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["zarr", "webdataset"]), default="zarr", show_default=True
)
@click.option("--train-split", default=None, help="[default: train, else the first split]")
@click.option(
    "--eval-split", default=None, help="[default: validate, val or test, whichever exists]"
)
@click.option(
    "--resize",
    type=int,
    default=32,
    show_default=True,
    help="Latent size after resizing; 0 keeps it.",
)
@click.option(
    "--crop",
    type=int,
    default=28,
    show_default=True,
    help="Random (train) / center (eval) crop; 0: none.",
)
@click.option("--flip/--no-flip", default=True, show_default=True)
@click.option(
    "--buffer-size",
    type=int,
    default=256,
    show_default=True,
    help="Shuffle buffer, in samples per worker.",
)
@click.option(
    "--workers",
    type=int,
    default=0,
    show_default=True,
    help="DataLoader worker processes (spawned).",
)
@click.option(
    "--codec-checkpoint",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="z_hat stores encoded with a weights file: that file (h_s gives scales_hat).",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA.")
@click.option(
    "--cache",
    type=click.Choice(["off", "host", "device"]),
    default="off",
    show_default=True,
    help="Hold the splits whole in host or device memory (refused when they do not fit); epochs after the first read no disk.",
)
@click.option(
    "--compile",
    type=click.Choice(
        ["off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
    ),
    default="off",
    show_default=True,
    help="torch.compile mode; reduce-overhead: CUDA graphs (CUDA).",
)
@click.option(
    "--cudnn-benchmark/--no-cudnn-benchmark",
    default=True,
    show_default=True,
    help="cuDNN autotuning (CUDA only).",
)
@click.option(
    "--fused-optimizer/--no-fused-optimizer",
    default=True,
    show_default=True,
    help="Fused SGD/AdamW update (CUDA only).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-batches", type=int, default=None, help="Cap on steps per epoch (smoke runs).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option(
    "--list-models",
    is_flag=True,
    help="Print each model, its inputs and parameter count (for STORE, or --channels/--classes), and exit.",
)
@click.option(
    "--channels", type=int, default=None, help="M for --list-models without a store [192]."
)
@click.option(
    "--classes", type=int, default=None, help="Classes for --list-models without a store [23]."
)
@click.option("-v", "--verbose", count=True)
@handle_errors
def train(store, out, preset, list_models, channels, classes, verbose, **_options):
    """Train a model for STORE's task on its latents (never runs the codec).

    Settings: latentcache's defaults, then --preset's, then the options given here.
    """
    if list_models:
        return _print_models(store, channels, classes)
    if store is None:
        raise click.UsageError("Missing argument 'STORE'.")
    setup_logging(max(verbose, 1) if _is_main_rank() else 0)
    from latentcache.train import run_training
    from latentcache.train.checkpoint import check_run_folder

    if _options["resume"] and out:  # before the store is opened for the default model
        check_run_folder(out)
    config = train_config(click.get_current_context())
    if config.resume and not out:
        check_run_folder(config.out)
    result = run_training(config)
    if _is_main_rank():
        key = f"eval_{result['score_key']}"
        name, value = (
            (result["score_label"], result[key])
            if key in result
            else ("train top-1", result["train_top1"])
        )
        click.echo(
            f"{config.out}: {result['epochs']} epochs, {name} {value:.4f} "
            f"(best {result['best_score']:.4f})"
        )


@click.command("eval")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("store")  # a folder or a URL
@click.option("--split", default="test", show_default=True)
@click.option(
    "--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["zarr", "webdataset"]),
    default=None,
    help="[default: the run's]",
)
@click.option("--batch-size", "-b", type=int, default=None)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option("--workers", type=int, default=0, show_default=True)
@click.option(
    "--codec-checkpoint",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="z_hat stores encoded with a weights file: that file (h_s gives scales_hat).",
)
@click.option(
    "--pictures",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Samples on RUN_DIR/pictures_<split>.png, for tasks that draw them (segmentation: "
    "image, decoded, truth, prediction; detection: boxes on the image); 0: none.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object (top1, top5, per_class, confusion, ...).",
)
@click.option("-v", "--verbose", count=True)
@handle_errors
def evaluate(
    run_dir, store, split, checkpoint, fmt, batch_size, device, workers, codec_checkpoint,
    pictures, as_json, verbose,
):  # fmt: skip
    """Evaluate RUN_DIR's checkpoint on a split of STORE (deterministic center crop)."""
    setup_logging(verbose)
    from latentcache.train import evaluate_run

    result = evaluate_run(
        run_dir,
        store,
        split,
        checkpoint=checkpoint,
        fmt=fmt,
        batch_size=batch_size,
        device=device,
        workers=workers,
        codec_checkpoint=codec_checkpoint,
        pictures=pictures,
    )
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
        return
    from latentcache.tasks import get_task

    head = f"{result['model']} ({result['checkpoint']}, epoch {result['epoch']}) on {split}: "
    line, per_class = get_task(result["task"]).headline(result)
    click.echo(head + line)
    width = max(len(c) for c in per_class)
    for name, value in per_class.items():
        click.echo(f"  {name:<{width}}  {'-' if value is None else f'{value:.4f}'}")

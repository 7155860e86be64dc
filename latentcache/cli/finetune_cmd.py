"""``finetune``: fine-tune a codec and/or its classifier for the task (T-FT, C-FT, J-FT).

torch is imported inside the command, so ``latentcache --help`` stays fast. Options left
unset take the ``--preset``'s value, then the FinetuneConfig default.
"""

from __future__ import annotations

import json

import click

from latentcache.cli.common import codec_options, command_line, handle_errors, setup_logging

__all__ = ["finetune", "finetune_config"]

# option name -> FinetuneConfig field, for the options a preset may fill
_TUNABLE = (
    "mode", "classifier", "beta", "gamma", "lmbda", "epochs", "codec_epochs", "batch_size", "lr",
    "classifier_lr", "classifier_optimizer", "classifier_bn", "aux_lr", "scales_repr",
)  # fmt: skip


def _list_presets() -> None:
    from latentcache.finetune import PRESETS

    for name, p in sorted(PRESETS.items()):
        opts = " ".join(f"{k}={v}" for k, v in p.options.items())
        click.echo(f"{name:<28} {opts}")
        click.echo(f"{'':<28} {p.note}")


def _resolve(preset: str | None, given: dict) -> tuple[dict, int | None]:
    """(config fields, quality): explicit options, then the preset's, then the defaults."""
    from latentcache.finetune.presets import resolve_options

    return resolve_options(preset, given)


def _run_detection(dataset, data_root, spec, train_split, eval_split, max_batches, device, seed,
                   out, command, detection: dict, given: dict) -> dict:  # fmt: skip
    """``--task detection``: chamain2021's settings on a Faster R-CNN of decoded images."""
    from latentcache.errors import ConfigError
    from latentcache.finetune.detection_run import DetectionFinetuneConfig, run_detection_finetune

    unused = [k for k in ("classifier", "gamma", "codec_epochs", "classifier_lr",
                          "classifier_optimizer", "classifier_bn") if given.get(k) is not None]  # fmt: skip
    if unused:
        raise ConfigError(
            f"--task detection takes no {', '.join('--' + k.replace('_', '-') for k in unused)}"
        )
    sizes = {k: v for k, v in (("min_size", detection.pop("image_min_size")),
                               ("max_size", detection.pop("image_max_size"))) if v}  # fmt: skip
    fields = {k: v for k, v in given.items() if v is not None and k in (
        "mode", "beta", "lmbda", "epochs", "batch_size", "lr", "aux_lr", "scales_repr")}  # fmt: skip
    config = DetectionFinetuneConfig(
        dataset=dataset, out=out, codec=spec, data_root=data_root, train_split=train_split,
        eval_split=eval_split, max_batches=max_batches, device=device, seed=seed, command=command,
        detector_kwargs=sizes, **{k: v for k, v in detection.items() if v is not None}, **fields,
    )  # fmt: skip
    return run_detection_finetune(config)


@click.command()
@click.option("--dataset", "-d", default=None, help="Dataset adapter (images, not a store).")
@click.option("--task", type=click.Choice(["classification", "detection"]),
              default="classification", show_default=True,
              help="detection: a Faster R-CNN of decoded images (chamain2021) on a detection "
              "dataset (coco, voc-det, cocofolder).")  # fmt: skip
@click.option("--detector", type=click.Path(file_okay=False), default=None,
              help="--task detection: a detection fine-tuning run folder (its detector.pt) "
              "[default: a new --detector-model].")  # fmt: skip
@click.option(
    "--detector-model",
    default=None,
    help="--task detection: registered detector [default: fasterrcnn-resnet50-fpn].",
)
@click.option("--detector-lr", type=float, default=None, help="--task detection [default: --lr]")
@click.option("--image-min-size", type=int, default=None,
              help="--task detection: the detector resizes images to this shorter side [default: 800].")  # fmt: skip
@click.option(
    "--image-max-size",
    type=int,
    default=None,
    help="--task detection: ... and at most this longer side [default: 1333].",
)
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@codec_options
@click.option("--preset", default=None, help="Paper settings (see --list-presets).")
@click.option("--list-presets", is_flag=True, help="Print the presets and exit.")
@click.option("--mode", type=click.Choice(["task", "codec", "joint"]), default=None,
              help="task: classifier only; codec: codec only (classifier frozen); joint: both "
              "[default: joint].")  # fmt: skip
@click.option("--classifier", type=click.Path(file_okay=False), default=None,
              help="`latentcache train` run folder (its last.pt) trained on the parent codec's store.")  # fmt: skip
@click.option("--beta", type=float, default=None, help="Weight of the rate (bpp) [default: 1].")
@click.option("--gamma", type=float, default=None,
              help="Weight of lambda*255^2*MSE(g_s(y_hat), x) [default: 0].")  # fmt: skip
@click.option("--lambda", "lmbda", type=float, default=None,
              help="lambda of the distortion term, used when --gamma > 0 [default: the codec's "
              "own, else CompressAI's table for its --quality].")  # fmt: skip
@click.option("--epochs", type=int, default=None, help="[default: 5]")
@click.option("--codec-epochs", type=int, default=None, help="Train the codec in the first N only.")
@click.option("--batch-size", "-b", type=int, default=None, help="[default: 16]")
@click.option("--lr", type=float, default=None, help="Codec Adam lr [default: 1e-4].")
@click.option("--classifier-lr", type=float, default=None, help="[default: --lr]")
@click.option("--classifier-optimizer", type=click.Choice(["adam", "sgd"]), default=None)
@click.option("--classifier-bn", type=click.Choice(["auto", "update", "fixed"]), default=None,
              help="Classifier BatchNorm statistics while it trains [default: auto: fixed while "
              "the codec trains, updated otherwise].")  # fmt: skip
@click.option("--aux-lr", type=float, default=None, help="Quantiles' Adam [default: 1e-3].")
@click.option("--scales", "scales_repr", type=click.Choice(["index", "float16", "float32", "z_hat"]),
              default=None, help="How the stores keep sigma-hat [default: index].")  # fmt: skip
@click.option("--train-split", default="train", show_default=True)
@click.option("--eval-split", default=None, help="[default: validate, val or test]")
@click.option("--max-batches", type=int, default=None, help="Cap on steps per epoch.")
@click.option("--workers", type=int, default=0, show_default=True)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option("--amp/--no-amp", default=True, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its state.pt.")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json.")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None)
@click.option("-v", "--verbose", count=True)
@handle_errors
def finetune(dataset, task, detector, detector_model, detector_lr, image_min_size, image_max_size,
             data_root, arch, quality, metric, codec_source, checkpoint, preset,
             list_presets, train_split, eval_split, max_batches, workers, device, amp, seed,
             threads, resume, as_json, out, verbose, **given):  # fmt: skip
    """Fine-tune the codec and/or classifier on a dataset's images for the task.

    Writes OUT/codec.pt (encode --checkpoint), a classifier run (eval OUT STORE) and
    OUT/summary.json: top-1 and true bpp from real bytes, frozen codec vs fine-tuned.
    With --task detection: OUT/codec.pt, OUT/detector.pt and a summary with COCO mAP.
    """
    if list_presets:
        _list_presets()
        return
    setup_logging(max(verbose, 1))
    from latentcache.errors import ConfigError
    from latentcache.finetune import format_summary, run_finetune

    if dataset is None or out is None:
        raise ConfigError("finetune needs --dataset NAME and --out FOLDER")
    if task == "detection":
        _finetune_detection(locals(), given)
        return
    config = finetune_config(click.get_current_context())
    if threads:
        import torch

        torch.set_num_threads(threads)
    summary = run_finetune(config)
    click.echo(
        json.dumps(summary, indent=2, sort_keys=True) if as_json else format_summary(summary)
    )


def finetune_config(ctx: click.Context):
    """The FinetuneConfig that ``finetune``'s parsed options resolve to (explicit options, then
    the preset's, then the defaults), with the command that re-runs it."""
    from latentcache.cli.common import codec_spec_from_options
    from latentcache.finetune import FinetuneConfig

    p = ctx.params
    fields, preset_quality = _resolve(p["preset"], {k: p[k] for k in _TUNABLE})
    spec = codec_spec_from_options(p["arch"], p["quality"] or preset_quality, p["metric"],
                                   p["codec_source"], p["checkpoint"])  # fmt: skip
    return FinetuneConfig(
        dataset=p["dataset"], out=p["out"], codec=spec, data_root=p["data_root"],
        train_split=p["train_split"], eval_split=p["eval_split"], max_batches=p["max_batches"],
        workers=p["workers"], device=p["device"], amp=p["amp"], seed=p["seed"],
        resume=p["resume"], preset=p["preset"], command=command_line(ctx), **fields,
    )  # fmt: skip


def _finetune_detection(opts: dict, given: dict) -> None:
    from latentcache.cli.common import codec_spec_from_options
    from latentcache.errors import ConfigError
    from latentcache.finetune.detection_run import format_detection_summary

    if opts["preset"] or opts["resume"]:
        raise ConfigError("--task detection takes no --preset or --resume (not yet)")
    spec = codec_spec_from_options(opts["arch"], opts["quality"], opts["metric"],
                                   opts["codec_source"], opts["checkpoint"])  # fmt: skip
    if opts["threads"]:
        import torch

        torch.set_num_threads(opts["threads"])
    detection = {"detector": opts["detector"], "detector_model": opts["detector_model"],
                 "detector_lr": opts["detector_lr"], "image_min_size": opts["image_min_size"],
                 "image_max_size": opts["image_max_size"]}  # fmt: skip
    summary = _run_detection(
        opts["dataset"], opts["data_root"], spec, opts["train_split"], opts["eval_split"],
        opts["max_batches"], opts["device"], opts["seed"], opts["out"],
        command_line(click.get_current_context()), detection, given,
    )  # fmt: skip
    text = format_detection_summary(summary)
    click.echo(json.dumps(summary, indent=2, sort_keys=True) if opts["as_json"] else text)

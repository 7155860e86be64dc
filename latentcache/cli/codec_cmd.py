"""``codec train`` and ``codec eval``: make a codec, and measure one against JPEG."""

from __future__ import annotations

import json
from pathlib import Path

import click

from latentcache.cli.common import handle_errors, setup_logging

__all__ = ["codec"]

# as latentcache.codec.evaluate.DEFAULT_JPEG_QUALITIES (not imported: the CLI starts without numpy/torch)
DEFAULT_JPEG_QUALITIES = (2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95)


@click.group()
def codec() -> None:
    """Train a learned codec, or evaluate codecs (true bpp, PSNR, MS-SSIM) against JPEG."""


def _training_files(images: str | None, dataset: str | None, data_root: str | None):
    """(files, root, description) from --images or a dataset's train split."""
    from latentcache.codec.train import list_image_files
    from latentcache.errors import ConfigError

    if (images is None) == (dataset is None):
        raise ConfigError("give exactly one of --images DIR or --dataset NAME")
    if images is not None:
        return list_image_files(images), Path(images), {"images": str(Path(images))}
    from latentcache.datasets import build_index

    index = build_index(dataset, data_root)
    samples = index.split("train")
    if not samples:
        raise ConfigError(f"dataset {dataset!r} has no 'train' split at {index.root}")
    files = [index.root / s.path for s in samples]
    return files, index.root, {"dataset": dataset, "index_sha256": index.sha256()}


@codec.command("train")
@click.option("--images", type=click.Path(file_okay=False), default=None, help="Folder of images.")
@click.option("--dataset", "-d", default=None, help="Train on this dataset's train split.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@click.option("--arch", default="bmshj2018-hyperprior", show_default=True)
@click.option("--quality", "-q", type=int, default=3, show_default=True, help="1..8: λ and widths.")
@click.option("--metric", type=click.Choice(["mse", "ms-ssim"]), default="mse", show_default=True)
@click.option(
    "--init",
    type=click.Choice(["scratch", "zoo", "checkpoint"]),
    default="scratch",
    show_default=True,
    help="Start from random weights, CompressAI's pretrained zoo, or --init-checkpoint.",
)
@click.option("--init-checkpoint", type=click.Path(dir_okay=False), default=None)
@click.option("--lambda", "lmbda", type=float, default=None, help="[default: CompressAI's table]")
@click.option("--N", "N", type=int, default=None, help="Width N [default: the zoo's].")
@click.option("--M", "M", type=int, default=None, help="Width M [default: the zoo's].")
@click.option("--steps", type=int, default=10_000, show_default=True)
@click.option("--max-minutes", type=float, default=None, help="Stop and save after this long.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--crop", type=int, default=256, show_default=True, help="Random crop size (/64).")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--aux-lr", type=float, default=1e-3, show_default=True)
@click.option("--clip", "clip_max_norm", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--save-every", type=int, default=250, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--half/--no-half", default=False, help="Store weights as float16 (half the file).")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Use <out>.state.pt.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False))
@click.option("-v", "--verbose", count=True)
@handle_errors
def train(images, dataset, data_root, threads, resume, verbose, **options) -> None:
    """Rate–distortion training of a CompressAI codec; the result loads with --checkpoint."""
    setup_logging(max(verbose, 1))
    from latentcache.codec.train import TrainConfig, run_codec_train

    config = TrainConfig(**options)
    files, root, source = _training_files(images, dataset, data_root)
    import torch

    if threads:
        torch.set_num_threads(threads)
    result = run_codec_train(config, files, root, resume=resume, data_source=source)
    last = result.history[-1] if result.history else {}
    click.echo(
        f"saved {result.out}: {result.steps} steps in {result.seconds / 60:.1f} min, "
        f"est. bpp {last.get('bpp', float('nan')):.3f}, PSNR {last.get('psnr', float('nan')):.2f} dB"
    )


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def _eval_codecs(arch, metric, codec_sources, qualities, checkpoints) -> list:
    """Every codec named on the command line, loaded (one per checkpoint / source × quality)."""
    from latentcache.codec.load import load_codec
    from latentcache.codec.spec import CodecSpec

    specs = [
        CodecSpec(arch=arch, metric=metric, source="checkpoint", checkpoint=c) for c in checkpoints
    ]
    for source in codec_sources:
        for q in qualities or (None,):  # None: the demo codec's own quality; 8 for the zoo
            specs.append(CodecSpec(arch=arch, quality=q, metric=metric, source=source))
    return [load_codec(s) for s in specs]


def _parse_qualities(text: str) -> tuple[int, ...]:
    from latentcache.errors import ConfigError

    try:
        return tuple(int(q) for q in text.split(",") if q.strip())
    except ValueError:
        raise ConfigError(f'Invalid --jpeg-qualities "{text}", should be like 10,30,50') from None


@codec.command("eval")
@click.option("--images", required=True, type=click.Path(file_okay=False), help="Image folder.")
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Codec checkpoint (repeat for several points on the curve).",
)
@click.option(
    "--codec",
    "codec_sources",
    multiple=True,
    type=click.Choice(["demo", "zoo"]),
    help="The shipped demo codec, or CompressAI's pretrained zoo at each --quality.",
)
@click.option("--quality", "-q", "qualities", multiple=True, type=int, help="Repeatable.")
@click.option("--arch", default=None, help="[default: bmshj2018-hyperprior; a checkpoint's own]")
@click.option("--metric", type=click.Choice(["mse", "ms-ssim"]), default=None)
@click.option(
    "--jpeg-qualities",
    default=",".join(map(str, DEFAULT_JPEG_QUALITIES)),
    show_default=True,
)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the results' means as JSON.")
@click.option("-v", "--verbose", count=True)
@handle_errors
def eval_(
    images,
    checkpoints,
    codec_sources,
    qualities,
    arch,
    metric,
    jpeg_qualities,
    out,
    threads,
    as_json,
    verbose,
):
    """True bpp (from the bytes), PSNR and MS-SSIM per image and mean, against JPEG; JSON + plot."""
    setup_logging(verbose)
    from latentcache.codec.evaluate import EvalConfig, load_eval_images, run_codec_eval
    from latentcache.codec.train import list_image_files

    config = EvalConfig(out=out, jpeg_qualities=_parse_qualities(jpeg_qualities))
    import torch

    if threads:
        torch.set_num_threads(threads)
    codecs = _eval_codecs(arch, metric, codec_sources, qualities, checkpoints)
    results = run_codec_eval(
        codecs, load_eval_images(list_image_files(images), Path(images)), config
    )
    if as_json:
        _echo_json(
            {
                e["label"]: {"codec": e["mean"], "jpeg_at_same_bpp": e["jpeg_at_same_bpp"]["mean"]}
                for e in results["codecs"]
            }
        )
    else:
        _echo_table(results)
    click.echo(f"wrote {Path(out) / 'results.json'} and {Path(out) / 'rd.png'}")


def _fmt(v, spec: str) -> str:
    return "   n/a" if v is None else format(v, spec)


def _echo_table(results: dict) -> None:
    click.echo(
        f"{'codec':44} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} | JPEG same bpp: {'PSNR':>7} {'MS-SSIM':>8}"
    )
    for e in results["codecs"]:
        m, j = e["mean"], e["jpeg_at_same_bpp"]["mean"]
        click.echo(
            f"{e['label'][:44]:44} {m['bpp']:7.3f} {_fmt(m['psnr'], '7.2f')} {_fmt(m['ms_ssim'], '8.4f')} |"
            f"{'':15}{_fmt(j['psnr'], '7.2f')} {_fmt(j['ms_ssim'], '8.4f')}"
        )
    for j in results["jpeg"]:
        m = j["mean"]
        click.echo(
            f"{'JPEG q' + str(j['quality']):44} {m['bpp']:7.3f} {_fmt(m['psnr'], '7.2f')} {_fmt(m['ms_ssim'], '8.4f')}"
        )

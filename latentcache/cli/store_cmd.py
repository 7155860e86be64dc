"""``encode``, ``inspect``, ``verify``, ``pull`` and ``push``: making, checking and copying a store.

Stores are read from a local path or a URL (file://, memory://, http(s)://, s3://, gs://);
``encode`` writes to local or shared POSIX folders only, ``push`` copies to object stores."""

from __future__ import annotations

import json
from pathlib import Path

import click

from latentcache.cli.common import (
    codec_options,
    codec_spec_from_options,
    command_line,
    handle_errors,
    setup_logging,
)

__all__ = ["encode", "encode_config", "inspect", "verify", "pull", "push"]

FORMAT_CHOICES = {"zarr": ("zarr",), "webdataset": ("webdataset",), "both": ("zarr", "webdataset")}


@click.command()
@click.option(
    "--dataset",
    "-d",
    required=True,
    help="Registered dataset: minc, resisc45, rsscn7, imagefolder, demo; segmentation: voc, "
    "segfolder, demo-seg; detection: coco, voc-det, cocofolder, demo-det.",
)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False),
    default=None,
    help="Dataset folder [default: $LATENTCACHE_DATA/<dataset> or ~/.cache/latentcache/datasets/<dataset>].",
)
@click.option(
    "--download",
    is_flag=True,
    help="Fetch, check and unpack the dataset first if it is missing (as `latentcache download`; "
    "a mirror from $LATENTCACHE_MIRROR).",
)
@click.option(
    "--split-set", type=int, default=None, help="MINC-2500 official split 1..5 [default: 1]."
)
@click.option(
    "--train-split",
    type=click.Choice(["train_aug", "train"]),
    default=None,
    help="VOC training set: train_aug (SBD + VOC2012 train, 10,582) or VOC2012 train [default: train_aug].",
)
@codec_options
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Output store folder [default: stores/<dataset>-q<quality>, or -<checkpoint name>].",
)
@click.option(
    "--format", "fmt", type=click.Choice(sorted(FORMAT_CHOICES)), default="both", show_default=True
)
@click.option(
    "--scales",
    "scales_repr",
    type=click.Choice(["index", "float16", "float32", "z_hat"]),
    default="index",
    show_default=True,
    help="How scales_hat is stored (README: 'Scales representation').",
)
@click.option(
    "--shard-size", type=int, default=256, show_default=True, help="Samples per shard (= per task)."
)
@click.option(
    "--batch-size",
    type=int,
    default=0,
    help="Same-size images per g_a call [default: 1 on the CPU, where it measured faster; 16 on a GPU].",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Dask LocalCluster worker processes, one torch thread each; 0 runs in this process [default: the available cores].",
)
@click.option(
    "--scheduler", default=None, help="Address of an existing Dask scheduler (a real cluster)."
)
@click.option(
    "--dashboard",
    default="127.0.0.1:8787",
    show_default=True,
    help="Address of the LocalCluster's Dask dashboard (a free port if taken); its link is printed.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="Device for g_a/h_a (e.g. cuda); entropy coding stays on the CPU.",
)
@click.option(
    "--max-pixels",
    type=int,
    default=None,
    help="Decompression-bomb limit in pixels [default: Pillow's 89,478,485].",
)
@click.option(
    "--order",
    type=click.Choice(["shuffled", "index"]),
    default="shuffled",
    show_default=True,
    help="Row order of every split: a seeded permutation, or the dataset index's (class-sorted) order.",
)
@click.option(
    "--order-seed", type=int, default=0, show_default=True, help="Seed of the shuffled row order."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing store at --out.")
@click.option("-v", "--verbose", count=True)
@handle_errors
def encode(verbose, **_params):
    """Encode a dataset into a latent store: bitstreams, true bpp, y_hat and scales_hat."""
    setup_logging(verbose)
    from latentcache.pipeline.encode import run_encode

    config = encode_config(click.get_current_context())
    result = run_encode(
        config, on_dashboard=lambda link: click.echo(f"Dask dashboard: {link}", err=True)
    )
    click.echo(_summary(result))


def encode_config(ctx: click.Context):
    """The EncodeConfig that ``encode``'s parsed options resolve to, with the command that
    re-runs it."""
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import available_cores

    p = ctx.params
    spec = codec_spec_from_options(
        p["arch"], p["quality"], p["metric"], p["codec_source"], p["checkpoint"]
    )
    return EncodeConfig(
        dataset=p["dataset"],
        out=p["out"] or _default_out(p["dataset"], spec),
        data_root=p["data_root"],
        dataset_options=_dataset_options(split_set=p["split_set"], train_split=p["train_split"]),
        codec=spec,
        formats=FORMAT_CHOICES[p["fmt"]],
        shard_size=p["shard_size"],
        scales_repr=p["scales_repr"],
        batch_size=p["batch_size"],
        workers=available_cores() if p["workers"] is None else p["workers"],
        scheduler=p["scheduler"],
        dashboard=p["dashboard"],
        device=p["device"],
        order=p["order"],
        order_seed=p["order_seed"],
        overwrite=p["overwrite"],
        download=p["download"],
        command=command_line(ctx),
        **({"max_pixels": p["max_pixels"]} if p["max_pixels"] else {}),
    )


def _dataset_options(**options) -> dict:
    """The adapter options given on the command line (those left unset keep their defaults)."""
    return {k: v for k, v in options.items() if v is not None}


def _default_out(dataset: str, spec) -> str:
    if spec.quality is not None:
        return f"stores/{dataset}-q{spec.quality}"
    return f"stores/{dataset}-{Path(spec.checkpoint).stem if spec.checkpoint else spec.source}"


def _summary(result) -> str:
    from latentcache.store.card import failure_lines, format_bytes, ordered_splits, store_bytes

    m, t = result.manifest, result.manifest["totals"]
    lines = [
        f"encoded {t['stored']} of {t['indexed']} images ({t['failed']} failed)"
        + (" — resumed" if result.resumed else "")
    ]
    for name, s in ordered_splits(m):
        bpp = "-" if s["bpp_mean"] is None else f"{s['bpp_mean']:.4f}"
        lines.append(
            f"  {name:<9} {s['stored']:>7} stored, {s['failed']:>5} failed, mean true bpp {bpp}"
        )
    lines += failure_lines(m["failures"], pointer=f"latentcache inspect {result.path} --json")
    lines.append(
        f"store {result.path} ({format_bytes(store_bytes(result.path))}); see `latentcache inspect {result.path}`"
    )
    return "\n".join(lines)


@click.command()
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
@handle_errors
def inspect(store, as_json):
    """Print a store's dataset card (STORE: a folder or URL): codec, counts, bpp per split, failures."""
    from latentcache.store.card import format_card
    from latentcache.store.manifest import read_manifest

    m = read_manifest(store)
    click.echo(json.dumps(m, indent=1, sort_keys=True) if as_json else format_card(m, store))


@click.command()
@click.argument("store")
@click.option(
    "--redecode",
    is_flag=True,
    help="Also entropy-decode every bitstream and compare the stored latents.",
)
@codec_options
@click.option("-v", "--verbose", count=True)
@handle_errors
def verify(store, redecode, arch, quality, metric, codec_source, checkpoint, verbose):
    """Check every shard's sha256 and sample count; exit 1 naming any damaged file."""
    setup_logging(verbose)
    from latentcache.store.reader import open_store
    from latentcache.store.verify import verify_store

    st = open_store(store)
    codec = _codec_for(st, checkpoint, codec_source) if redecode else None
    report = verify_store(st, redecode=redecode, codec=codec)
    for problem in report.problems:
        click.echo(f"DAMAGED {problem}", err=True)
    what = f"{report.files_checked} files" + (f", {report.redecoded_summary()}" if redecode else "")
    if not report.ok:
        raise click.ClickException(f"{store}: {len(report.problems)} problems in {what}")
    click.echo(f"OK {store}: {what}")


def _codec_for(st, checkpoint, codec_source):
    """The store's own codec: its checkpoint (--checkpoint), the demo codec or the zoo."""
    from latentcache.codec.load import load_codec, load_store_codec
    from latentcache.codec.spec import CodecSpec

    if not checkpoint and codec_source == "demo":
        return load_codec(CodecSpec(source="demo"))
    return load_store_codec(st.codec, checkpoint)


def _transfer_summary(verb: str, src: str, result) -> str:
    from latentcache.store.card import format_bytes

    return (
        f"{verb} {result.copied} files ({format_bytes(result.bytes_copied)}), "
        f"{result.skipped} already intact, from {src} to {result.dest}; "
        f"splits {', '.join(result.splits)}\n"
        f"manifest sha256 {result.manifest_sha256}; check it with `latentcache verify {result.dest}`"
    )


@click.command()
@click.argument("src")
@click.argument("dest")
@click.option(
    "--split",
    "splits",
    multiple=True,
    help="Copy only this split (repeatable); the copy's manifest covers those splits.",
)
@click.option("-v", "--verbose", count=True)
@handle_errors
def pull(src, dest, splits, verbose):
    """Copy the store at SRC (folder or URL) to DEST, checking every file's sha256.

    Re-running resumes: intact files are skipped. The manifest is written last."""
    setup_logging(verbose)
    from latentcache.store.transfer import TransferConfig, run_pull

    result = run_pull(TransferConfig(src=src, dest=dest, splits=tuple(splits)))
    click.echo(_transfer_summary("pulled", src, result))


@click.command()
@click.argument("src")
@click.argument("dest")
@click.option("-v", "--verbose", count=True)
@handle_errors
def push(src, dest, verbose):
    """Copy the store SRC to DEST (e.g. s3://bucket/path, gs://..., file://...), checking every
    file's sha256. Re-running resumes; the manifest is written last."""
    setup_logging(verbose)
    from latentcache.store.transfer import TransferConfig, run_push

    result = run_push(TransferConfig(src=src, dest=dest))
    click.echo(_transfer_summary("pushed", src, result))

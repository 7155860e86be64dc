"""``download``: fetch, check and unpack a dataset from the download spec committed for it."""

from __future__ import annotations

import click

from latentcache.cli.common import handle_errors, setup_logging

__all__ = ["download"]


@click.command()
@click.argument("dataset", required=False)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the dataset goes [default: $LATENTCACHE_DATA/<dataset> or ~/.cache/latentcache/datasets/<dataset>].",
)
@click.option(
    "--mirror",
    default=None,
    metavar="URL",
    help="Fetch <URL>/<archive name> instead of the publisher's host, checked with the same "
    "checksums: http(s)://, s3://, gs://, file:// or a folder [default: $LATENTCACHE_MIRROR].",
)
@click.option(
    "--trust-unverified",
    is_flag=True,
    help="Fetch archives for which no checksum is recorded anywhere (RSSCN7); their sha256 is "
    "recorded as computed here, not as a publisher's.",
)
@click.option(
    "--keep-archives",
    is_flag=True,
    help="Keep the archives fetched here after unpacking them (ones placed by hand are always kept).",
)
@click.option("--list", "list_specs", is_flag=True, help="List the datasets, URLs and checksums.")
@click.option("-v", "--verbose", count=True)
@handle_errors
def download(dataset, data_root, mirror, trust_unverified, keep_archives, list_specs, verbose):
    """Download DATASET (minc, resisc45, rsscn7, voc, coco), check it and unpack it.

    Archives resume where they stopped (Ctrl-C leaves a .part file); a checksum mismatch keeps
    the file aside as .bad; a second run finds the data and does nothing. Offline, place the
    archive named in the error in <data root>/downloads/ and re-run.
    """
    setup_logging(max(verbose, 1))
    if list_specs or dataset is None:
        click.echo(_listing())
        return
    from latentcache.download import DownloadConfig, run_download

    config = DownloadConfig(
        dataset=dataset,
        data_root=data_root,
        mirror=mirror,
        trust_unverified=trust_unverified,
        keep_archives=keep_archives,
    )
    result = run_download(config)
    if result.did_nothing:
        click.echo(f"{dataset}: already present under {result.root}; nothing to do")
        return
    for name, digest in result.unverified.items():
        click.echo(f"{name}: UNVERIFIED (no recorded checksum); sha256 computed here {digest}")
    click.echo(
        f"{dataset}: {len(result.installed)} file(s) checked and unpacked under {result.root} "
        f"({len(result.fetched)} fetched)"
    )


def _listing() -> str:
    from latentcache.download import available_specs, load_spec

    lines = []
    for name in available_specs():
        spec = load_spec(name)
        for f in spec.files:
            check = (
                f"{f.checksum.algorithm} {f.checksum.value} ({f.checksum.source})"
                if f.checksum
                else f"no recorded checksum: {f.checksum_note}"
            )
            lines.append(f"{name:<9} {f.filename}\n          {f.urls[0]}\n          {check}")
    return "\n".join(lines)

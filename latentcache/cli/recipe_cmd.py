"""``run`` and ``report``: execute a recipe's cached stage graph; draw rate–accuracy reports."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from latentcache.cli.common import command_line, handle_errors, setup_logging

__all__ = ["run", "report", "run_options"]


def _seeds(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        seeds = tuple(int(s) for s in value.split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected integers like 0,1,2", param_hint="--seeds"
        ) from None
    if not seeds or min(seeds) < 0:
        raise click.BadParameter(f"{value!r}: expected integers >= 0", param_hint="--seeds")
    return seeds


def _print_plan(report) -> None:
    width = max((len(o.id) for o in report.outcomes), default=10)
    for o in report.outcomes:
        key = o.key[:12] if o.key else "pending"
        extra = f"  {o.seconds:.1f} s" if o.status in ("ran", "failed") else ""
        reason = f"  ({o.reason})" if o.reason else ""
        click.echo(f"  {o.id:<{width}}  {key:<12}  {o.status}{extra}{reason}")


def run_options(ctx: click.Context):
    """(recipe, RunOptions) that ``run``'s parsed options resolve to, with the command that
    re-runs it."""
    from latentcache.recipes import RunOptions, load_recipe

    p = ctx.params
    spec = load_recipe(p["recipe"])
    return spec, RunOptions(
        out=p["out"] or str(Path("runs") / spec.name),
        dry_run=p["dry_run"],
        force=tuple(p["force"]),
        only=tuple(p["only"]),
        seeds=_seeds(p["seeds"]),
        data_root=p["data_root"],
        command=command_line(ctx),
    )


@click.command()
@click.argument("recipe")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Run folder [default: runs/<recipe name>].",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="List the stages, their keys, cached or not, and what is missing.",
)
@click.option(
    "--force",
    multiple=True,
    metavar="STAGE",
    help="Re-run this stage kind (encode, decode, train, finetune, eval, report) or stage id even if cached.",
)
@click.option(
    "--only",
    multiple=True,
    metavar="STAGE",
    help="Run only these stages (kind or id); others must be cached.",
)
@click.option("--seeds", default=None, help="Training seeds, e.g. 0,1,2 [default: the recipe's].")
@click.option(
    "--data-root",
    type=click.Path(file_okay=False),
    default=None,
    help="The dataset folder [default: the recipe's].",
)
@click.option("-v", "--verbose", count=True)
@handle_errors
def run(recipe, out, dry_run, force, only, seeds, data_root, verbose):
    """Run RECIPE (a pipelines/*.toml file or a recipe name such as demo): encode -> [decode]
    -> train -> eval -> report, reusing every stage whose config and inputs are unchanged."""
    setup_logging(max(verbose, 1))
    warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3")
    from latentcache.recipes import run_recipe

    spec, options = run_options(click.get_current_context())
    result = run_recipe(spec, options)
    click.echo(f"{spec.name} ({spec.source}) -> {options.out}")
    _print_plan(result)
    if result.missing:
        click.echo("missing:")
        for line in result.missing:
            click.echo(f"  {line}")
    if not dry_run:
        click.echo(
            f"{result.count('ran')} stages ran, {result.count('cached')} cached, "
            f"{result.count('failed')} failed, {result.count('blocked')} blocked in {result.seconds:.1f} s"
        )
        if (Path(options.out) / "report" / "report.md").is_file():
            click.echo(f"report: {Path(options.out) / 'report' / 'report.md'}")
    if not result.ok:
        raise SystemExit(1)


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", type=click.Path(file_okay=False), required=True, help="Report folder.")
@click.option("-v", "--verbose", count=True)
@handle_errors
def report(run_dirs, out, verbose):
    """Rate–accuracy report of one or more `latentcache run` folders (ours beside the papers')."""
    setup_logging(verbose)
    from latentcache.report.rate_accuracy import REPORT_NAME, build_report

    try:
        folder = build_report(list(run_dirs), out)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(folder / REPORT_NAME))

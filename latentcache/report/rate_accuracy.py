"""Rate–accuracy reports: each task's scores against mean true bpp, ours beside the papers'.

::

    RUN_DIR/recipe.json (papers' points)  +  RUN_DIR/stages/eval-*/result.json (one per seed)
      └► rows ─► group by (dataset, model, input, quality, metric): mean ± std over seeds
      └► results.csv (every seed), summary.csv, report.md (tables, links), and one plot of
         the scores present (:data:`SCORES`: top-1/top-5 -> accuracy_vs_bpp.png, mIoU ->
         miou_vs_bpp.png, ...)

Scores in result rows are fractions (0.62), the papers' are percent as printed (62.0).

A paper point without a published rate (gupta2024 gives qualities) is drawn at our mean
true bpp for the same quality and metric, and says so; a point on original images is a
horizontal line.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import statistics
from collections import defaultdict
from pathlib import Path

__all__ = [
    "collect_rows",
    "summarize",
    "build_report",
    "scores_present",
    "plot_name",
    "REPORT_NAME",
    "SCORES",
]

logger = logging.getLogger(__name__)

REPORT_NAME = "report.md"
_GROUP = ("recipe", "dataset", "model", "arch", "input", "quality", "metric")
# score key -> its name on axes and in tables (classification, segmentation, detection)
SCORES = {
    "top1": "top-1",
    "top5": "top-5",
    "miou": "mIoU",
    "pixel_accuracy": "pixel accuracy",
    "map": "mAP",
    "map50": "mAP@0.5",
    "nap50": "nAP50",
}


def scores_present(lines: list[dict], papers: list[dict] = ()) -> list[str]:
    """The score keys (in :data:`SCORES` order) that some row or paper point carries."""
    items = list(lines) + list(papers)
    return [k for k in SCORES if any(r.get(k) is not None for r in items)]


def plot_name(scores: list[str]) -> str:
    """``accuracy_vs_bpp.png`` for classification, ``<first score>_vs_bpp.png`` otherwise."""
    return "accuracy_vs_bpp.png" if scores[0] in ("top1", "top5") else f"{scores[0]}_vs_bpp.png"


def collect_rows(run_dirs: list[str | os.PathLike]) -> tuple[list[dict], list[dict]]:
    """(our rows, the papers' points) of every run folder."""
    rows, papers, seen = [], [], set()
    for run_dir in map(Path, run_dirs):
        recipe_file = run_dir / "recipe.json"
        if not recipe_file.is_file():
            raise FileNotFoundError(f"no recipe.json in {run_dir}: not a `latentcache run` folder")
        recipe = json.loads(recipe_file.read_text())
        for p in recipe.get("papers", []):
            key = json.dumps(p, sort_keys=True)
            if key not in seen:
                seen.add(key)
                papers.append(p | {"dataset": recipe["dataset"], "recipe": recipe["name"]})
        for path in sorted((run_dir / "stages").glob("eval-*/result.json")):
            rows.append(json.loads(path.read_text()))
    return rows, papers


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(rows: list[dict]) -> list[dict]:
    """One line per (recipe, dataset, model, input, quality, metric): mean ± std over seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[tuple(r.get(k) for k in _GROUP)].append(r)
    out = []
    for key, rs in groups.items():
        line = dict(zip(_GROUP, key, strict=True))
        for metric in (*scores_present(rs), "bpp", "train_seconds"):
            line[metric], line[f"{metric}_std"] = _mean_std([r.get(metric) for r in rs])
        for name in (
            "encode_ms_per_image",
            "eval_ms_per_image",
            "decode_ms_per_image",
            "bitstream_bytes_per_image",
            "source_bytes_per_image",
            "epochs",
            "split",
            "count",
        ):
            line[name] = rs[0].get(name)
        stores = rs[0].get("store_bytes_per_image") or {}
        line["store_bytes_per_image"] = stores.get("zarr", stores.get("webdataset"))
        line["seeds"] = sorted(r["seed"] for r in rs)
        out.append(line)
    order = {"latents": 0, "decoded": 1, "original": 2}
    return sorted(out, key=lambda r: (r["dataset"], order[r["input"]], r["model"], r["bpp"] or 1e9))


def _fmt(v, std=None, pct=False, digits=1) -> str:
    if v is None:
        return "–"
    scale = 100.0 if pct else 1.0
    text = f"{v * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std else "")


def _kb(v) -> str:
    return "–" if v is None else f"{v / 1024:.2f}"


def _table(lines: list[dict]) -> list[str]:
    scores = scores_present(lines)
    head = (
        "| dataset | model | input | q | metric | mean true bpp | "
        + "".join(f"{SCORES[k]} % | " for k in scores)
        + "seeds | train s | eval ms/img | encode ms/img | decode ms/img | store KiB/img "
        "| bitstream KiB/img | source KiB/img |"
    )
    out = [head, "|" + "---|" * (14 + len(scores))]
    for r in lines:
        values = "".join(f"| {_fmt(r.get(k), r.get(f'{k}_std'), pct=True)} " for k in scores)
        out.append(
            f"| {r['dataset']} | {r['model']} | {r['input']} | {r['quality'] or '–'} "
            f"| {r['metric'] or '–'} | {_fmt(r['bpp'], digits=3)} "
            + values
            + f"| {len(r['seeds'])} | {_fmt(r['train_seconds'], r['train_seconds_std'])} "
            f"| {_fmt(r['eval_ms_per_image'])} "
            f"| {_fmt(r['encode_ms_per_image'])} | {_fmt(r['decode_ms_per_image'])} "
            f"| {_kb(r['store_bytes_per_image'])} | {_kb(r['bitstream_bytes_per_image'])} "
            f"| {_kb(r['source_bytes_per_image'])} |"
        )
    return out


def _ours_for(point: dict, lines: list[dict]) -> dict | None:
    """Our line for a paper point: same dataset, input, model, quality and metric where the
    point names them; among several, the one whose bpp is nearest the point's (log scale)."""
    found = [
        r
        for r in lines
        if r["dataset"] == point["dataset"]
        and r["input"] == point["input"]
        and point["model"] in (r["model"], r["arch"])
        and point.get("quality") in (None, r["quality"])
        and point.get("metric") in (None, r["metric"])
    ]
    if len(found) > 1 and point.get("bpp") and all(r.get("bpp") for r in found):
        return min(found, key=lambda r: abs(math.log(r["bpp"] / point["bpp"])))
    return found[0] if found else None


def _paper_table(papers: list[dict], lines: list[dict]) -> list[str]:
    scores = scores_present(papers)
    out = [
        "| source | row | model | input | q / bpp | "
        + "".join(f"paper {SCORES[k]} % | " for k in scores)
        + " | ".join(f"ours {SCORES[k]} %" for k in scores)
        + " |",
        "|" + "---|" * (5 + 2 * len(scores)),
    ]
    for p in papers:
        ours = _ours_for(p, lines)
        rate = (
            f"{p['bpp']} bpp"
            if p.get("bpp") is not None
            else (
                f"q{p['quality']} {p.get('metric') or ''}".strip()
                if p.get("quality")
                else "original"
            )
        )
        theirs = "".join(f"| {p[k] if p.get(k) is not None else '–'} " for k in scores)
        mine = "".join(
            f"| {_fmt(ours.get(k), ours.get(f'{k}_std'), pct=True) if ours else '–'} "
            for k in scores
        )
        out.append(
            f"| {p['source']} | {p['label']} | {p['model']} | {p['input']} | {rate} "
            + theirs
            + mine
            + "|"
        )
    return out


def _finetune_table(rows: list[dict]) -> list[str]:
    """Each fine-tuned row beside its frozen-codec baseline (same setting and seed)."""
    base = {(r["model"], r["quality"], r["metric"], r["seed"]): r for r in rows}
    out = [
        "| model | q | metric | seed | mode | β | γ | epochs | top-1 % | true bpp (re-encoded) "
        "| training likelihood bpp | frozen: model | frozen top-1 % | frozen true bpp |",
        "|" + "---|" * 14,
    ]
    for r in rows:
        ft = r.get("finetune")
        if not ft:
            continue
        b = base.get((r["baseline_model"], r["quality"], r["metric"], r["seed"])) or {}
        out.append(
            f"| {r['model']} | {r['quality'] or '–'} | {r['metric'] or '–'} | {r['seed']} "
            f"| {ft['mode']} | {ft['beta']:g} | {ft['gamma']:g} | {ft['epochs']} "
            f"| {_fmt(r['top1'], pct=True)} | {_fmt(r['bpp'], digits=4)} "
            f"| {_fmt(r.get('bpp_likelihood_train'), digits=4)} | {r['baseline_model']} "
            f"| {_fmt(b.get('top1'), pct=True)} | {_fmt(b.get('bpp'), digits=4)} |"
        )
    return out


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    names = sorted({k for r in rows for k in r})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()}
            )


def _paper_x(point: dict, lines: list[dict]) -> tuple[float | None, bool]:
    """(bpp, placed): the published bpp, else our mean bpp at the same quality and metric."""
    if point.get("bpp") is not None:
        return float(point["bpp"]), False
    for r in lines:
        if (
            r["dataset"] == point["dataset"]
            and r["input"] == "latents"
            and r["quality"] == point.get("quality")
            and point.get("metric") in (None, r["metric"])
            and r["bpp"] is not None
        ):
            return r["bpp"], True
    return None, False


def plot_rate_accuracy(
    lines: list[dict], papers: list[dict], path: Path, scores: list[str] | None = None
) -> Path:
    """Each score (default: those our rows carry) against mean true bpp: our lines with ± std,
    the papers' points; one panel per score."""
    from latentcache.report.training import _pyplot

    plt = _pyplot()
    scores = scores or scores_present(lines) or ["top1"]
    fig, axes = plt.subplots(1, len(scores), figsize=(6 * len(scores), 4.8), squeeze=False)
    axes = axes[0]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in lines:
        groups[(r["dataset"], r["model"], r["input"], r["metric"])].append(r)
    for ax, metric in zip(axes, scores, strict=True):
        for (dataset, model, inp, codec_metric), rs in groups.items():
            rs = [r for r in rs if r.get(metric) is not None]
            if not rs:
                continue
            label = f"ours: {model} on {inp}" + (f" ({codec_metric})" if codec_metric else "")
            label += f", {dataset}"
            if inp == "original":
                ax.axhline(100 * rs[0][metric], ls="--", lw=1.2, color="gray", label=label)
                continue
            rs = sorted(rs, key=lambda r: r["bpp"] or 0.0)
            ax.errorbar(
                [r["bpp"] for r in rs],
                [100 * r[metric] for r in rs],
                yerr=[100 * (r[f"{metric}_std"] or 0) for r in rs],
                marker="o",
                capsize=3,
                label=label,
            )
        _draw_papers(ax, papers, lines, metric)
        ax.set_xlabel("mean true bpp (bytes of the bitstreams × 8 / pixels)")
        ax.set_ylabel(f"{SCORES[metric]}{' accuracy' if metric in ('top1', 'top5') else ''} (%)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.025 * len(labels) / 2, 1, 1))
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def _draw_papers(ax, papers: list[dict], lines: list[dict], metric: str) -> None:
    """One marker and colour per paper row (source, label, model), its points across rates."""
    markers = "sD^vP*Xh"
    rows: dict[tuple, list[dict]] = defaultdict(list)
    for p in papers:
        if p.get(metric) is not None:
            rows[(p["dataset"], p["source"], p["label"], p["model"], p["input"])].append(p)
    for g, ((dataset, source, label, model, inp), points) in enumerate(rows.items()):
        text = f"{source}: {label} ({model} on {inp}, {dataset})"
        if inp == "original" and all(p.get("bpp") is None for p in points):
            ax.axhline(points[0][metric], ls=":", lw=1, color="black", label=text)
            continue
        xy = [(*_paper_x(p, lines), p[metric]) for p in points]
        xy = sorted((x, y, placed) for x, placed, y in xy if x is not None)
        if not xy:
            continue
        placed = any(pl for _, _, pl in xy)
        ax.plot(
            [x for x, _, _ in xy],
            [y for _, y, _ in xy],
            ls=":",
            marker=markers[g % len(markers)],
            mfc="none",
            ms=8,
            color=f"C{(g + 5) % 10}",
            label=text + (" (at our bpp for its quality)" if placed else ""),
        )


def build_report(run_dirs: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write report.md, results.csv, summary.csv and accuracy_vs_bpp.png into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, papers = collect_rows(run_dirs)
    lines = summarize(rows)
    _write_csv(out / "results.csv", rows)
    _write_csv(out / "summary.csv", lines)
    md = ["# Rate–accuracy report", "", f"Runs: {', '.join(str(d) for d in run_dirs)}", ""]
    scores = scores_present(lines)
    if lines and scores:
        name = plot_name(scores)
        plot_rate_accuracy(lines, papers, out / name, scores)
        md += [f"![{' and '.join(SCORES[k] for k in scores)} against mean true bpp]({name})", ""]
    md += [
        "## Ours",
        "",
        "Mean ± std over seeds; scores on the eval split. Compute: train s is the wall "
        "time of training (with its per-epoch validation), eval ms/img the inference on the eval "
        "split (with loading), encode ms/img the encode stage (g_a, entropy coding, h_s, "
        "entropy decoding, writing), decode ms/img g_s for the pixel baseline. Storage per "
        "image: store (the Zarr layout), bitstream (y and z strings), source (the original files).",
        "",
    ]
    md += _table(lines) if lines else ["(no finished evaluations yet)"]
    if any(r.get("finetune") for r in rows):
        md += ["", "## Fine-tuning against the frozen codec", ""] + _finetune_table(rows)
        md += [
            "",
            "True bpp is measured from the bytes of the store re-encoded with the fine-tuned "
            "codec (task mode on decoded pixels: the frozen codec's store, the codec unchanged); "
            "the training likelihood bpp (last epoch, with noise) is for reference only.",
        ]
    if papers:
        md += ["", "## The papers' numbers beside ours", ""] + _paper_table(papers, lines)
        md += [
            "",
            "Paper points without a published rate are drawn at our mean true bpp for "
            "the same quality and metric.",
        ]
    md += [
        "",
        "Tables as CSV: [summary.csv](summary.csv) (one line per setting), "
        "[results.csv](results.csv) (one line per seed).",
    ]
    (out / REPORT_NAME).write_text("\n".join(md) + "\n")
    return out

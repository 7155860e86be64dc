"""The rate–accuracy plot: each score against mean true bpp, ours with ± std over seeds
beside the papers' points (one marker per paper row; a point on original images, or without
a rate of its own, as :mod:`latentcache.report.rate_accuracy` describes)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

__all__ = ["plot_rate_accuracy", "SCORES"]

# score key -> its name on axes and in tables (classification, segmentation, detection)
SCORES = {
    "top1": "top-1",
    "top5": "top-5",
    "miou": "mIoU",
    "pixel_accuracy": "pixel accuracy",
    "map": "mAP",
    "map_50": "AP50",
    "nap50": "nAP50",
}


def scores_present(lines: list[dict], papers: list[dict] = ()) -> list[str]:
    """The score keys (in :data:`SCORES` order) that some row or paper point carries."""
    items = list(lines) + list(papers)
    return [k for k in SCORES if any(r.get(k) is not None for r in items)]


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

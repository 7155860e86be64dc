"""Rate–accuracy reports: each task's scores against mean true bpp, ours beside the papers'.

::

    RUN_DIR/recipe.json (papers' points)  +  RUN_DIR/stages/eval-*/result.json (one per seed)
      └► rows ─► group by (dataset, model, input, quality, metric): mean ± std over seeds
      └► results.csv (every seed), summary.csv, report.md (tables, links)
      └► per task (its report section, ``Task.report_section``): one plot of its scores
         present (:data:`SCORES`: top-1/top-5 -> accuracy_vs_bpp.png, mIoU and pixel
         accuracy -> miou_vs_bpp.png, mAP and AP50 -> map_vs_bpp.png), and the picture
         sheets its eval stages drew (stages/eval-*/pictures_<split>.png, copied to
         pictures/<stage>.png)

A row names its task (``task``); older rows without it belong to the first task whose
scores they carry. The papers' published statements without a score (chamain2021's gains in
points) are listed as they are.

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
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

from latentcache.report.rate_plot import SCORES, plot_rate_accuracy, scores_present

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
    """Each fine-tuned row beside its frozen-codec baseline (same setting and seed), by the
    rows' first score (top-1, or mAP for detection)."""
    base = {(r["model"], r["quality"], r["metric"], r["seed"]): r for r in rows}
    score = next(iter(scores_present([r for r in rows if r.get("finetune")])), "top1")
    name = SCORES.get(score, score)
    out = [
        f"| model | q | metric | seed | mode | β | γ | epochs | {name} % | true bpp (re-encoded) "
        f"| training likelihood bpp | frozen: model | frozen {name} % | frozen true bpp |",
        "|" + "---|" * 14,
    ]
    for r in rows:
        ft = r.get("finetune")
        if not ft:
            continue
        b = base.get((r["baseline_model"], r["quality"], r["metric"], r["seed"])) or {}
        out.append(
            f"| {r['model']} | {r['quality'] or '–'} | {r['metric'] or '–'} | {r['seed']} "
            f"| {ft['mode']} | {ft.get('beta') or 0:g} | {ft.get('gamma') or 0:g} "
            f"| {ft['epochs']} | {_fmt(r.get(score), pct=True)} | {_fmt(r['bpp'], digits=4)} "
            f"| {_fmt(r.get('bpp_likelihood_train'), digits=4)} | {r['baseline_model']} "
            f"| {_fmt(b.get(score), pct=True)} | {_fmt(b.get('bpp'), digits=4)} |"
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


def _section(row: dict):
    """The report section of a result row's task (see the module docstring)."""
    from latentcache.tasks import TASKS

    if row.get("task") in TASKS:
        return TASKS[row["task"]].report_section()
    for task in TASKS.values():
        section = task.report_section()
        if any(row.get(k) is not None for k in section.scores):
            return section
    return TASKS["classification"].report_section()


def _eval_pictures(run_dirs: list) -> list[tuple[dict, Path]]:
    """(result row, picture sheet) of every eval stage that drew one."""
    from latentcache.report.pictures import picture_name

    found = []
    for run_dir in map(Path, run_dirs):
        for path in sorted((run_dir / "stages").glob("eval-*/result.json")):
            row = json.loads(path.read_text())
            sheet = path.parent / picture_name(row.get("split", ""))
            if sheet.is_file():
                found.append((row, sheet))
    return found


def _section_md(section, lines: list[dict], papers: list[dict], shown: list, out: Path) -> list:
    """The plot of ``section``'s scores and its picture sheets ``shown`` (row, file)."""
    md = []
    scores = [k for k in section.scores if any(r.get(k) is not None for r in lines)]
    if scores:
        theirs = [p for p in papers if any(p.get(k) is not None for k in scores)]
        plot_rate_accuracy(lines, theirs, out / section.plot, scores)
        alt = " and ".join(SCORES[k] for k in scores)
        md += [f"![{alt} against mean true bpp]({section.plot})", ""]
    if shown:
        md += [f"## {section.title}: pictures from the latents", ""]
        (out / "pictures").mkdir(exist_ok=True)
    for row, sheet in shown:
        name = f"pictures/{sheet.parent.name}.png"
        shutil.copyfile(sheet, out / name)
        what = f"{row['model']} on {row['input']}" + (
            f", q{row['quality']} {row.get('metric') or ''}".rstrip() if row.get("quality") else ""
        )
        md += [
            f"{what}, seed {row.get('seed')}, {row.get('split')} split:",
            "",
            f"![{what}]({name})",
            "",
        ]
    return md


def _statements(papers: list[dict]) -> list[str]:
    out = []
    for p in papers:
        rate = f" ({p['bpp']} bpp)" if p.get("bpp") is not None else ""
        out.append(f"- {p['source']}, {p['label']}{rate}: {p['statement']}")
    return out


def build_report(run_dirs: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write report.md, results.csv, summary.csv, each task's plot and pictures into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, papers = collect_rows(run_dirs)
    statements = [p for p in papers if p.get("statement")]
    papers = [p for p in papers if scores_present([p])]
    lines = summarize(rows)
    _write_csv(out / "results.csv", rows)
    _write_csv(out / "summary.csv", lines)
    md = ["# Rate–accuracy report", "", f"Runs: {', '.join(str(d) for d in run_dirs)}", ""]
    sections: dict[str, tuple] = {}
    for line in lines:
        section = _section(line)
        sections.setdefault(section.name, (section, [], []))[1].append(line)
    seeds = {}
    for row, sheet in _eval_pictures(run_dirs):  # the first seed of each setting
        key = tuple(row.get(k) for k in _GROUP)
        seeds.setdefault(key, (row, sheet))
    for row, sheet in seeds.values():
        section = _section(row)
        sections.setdefault(section.name, (section, [], []))[2].append((row, sheet))
    for section, ls, shown in sections.values():
        md += _section_md(section, ls, papers, shown, out)
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
    if statements:
        md += ["", "## The papers' statements (no absolute numbers published)", ""]
        md += _statements(statements)
    md += [
        "",
        "Tables as CSV: [summary.csv](summary.csv) (one line per setting), "
        "[results.csv](results.csv) (one line per seed).",
    ]
    (out / REPORT_NAME).write_text("\n".join(md) + "\n")
    return out

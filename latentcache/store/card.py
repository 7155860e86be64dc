"""The human-readable dataset card of a store (``latentcache inspect``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from latentcache.store.manifest import manifest_inputs, manifest_task

__all__ = [
    "FAILURES_LISTED",
    "failure_lines",
    "format_card",
    "format_codec",
    "format_bytes",
    "ordered_splits",
    "store_bytes",
]

# How the card words a codec record's ``quality_source`` (codec.load.QUALITY_SOURCES).
_QUALITY_FROM = {
    "zoo": "names the CompressAI zoo file",
    "checkpoint": "recorded in the checkpoint",
    "user": "given by the user; the widths match it in CompressAI's table",
    "unknown": "not recorded in the weights",
    None: "as given at encode, unchecked (the store predates codec provenance)",
}


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def ordered_splits(m: dict) -> list[tuple[str, dict]]:
    """The manifest's splits as train, validate, test, then any others (JSON sorts them)."""
    order = {"train": 0, "validate": 1, "test": 2}
    return sorted(m["splits"].items(), key=lambda kv: (order.get(kv[0], 9), kv[0]))


FAILURES_LISTED = 20  # failed files named one by one before "and N more"


def failure_lines(failures: list[dict], pointer: str, limit: int = FAILURES_LISTED) -> list[str]:
    """Every failed file with its reason, up to ``limit``, then how many more and where."""
    if not failures:
        return []
    lines = [f"failed files ({len(failures)}):"]
    lines += [f"  {f.get('path') or f.get('key')}: {f['reason']}" for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"  and {len(failures) - limit} more: `{pointer}` lists them all")
    return lines


def _fmt(v, spec=".4f") -> str:
    return "-" if v is None else format(v, spec)


def _lineage(lin: dict) -> str:
    parent = str(lin.get("parent_weights_sha256") or "?")
    rest = ", ".join(
        f"{k} {lin[k]}" for k in ("mode", "beta", "gamma", "epochs") if lin.get(k) is not None
    )
    return f"fine-tuned from weights sha256 {parent}" + (f" ({rest})" if rest else "")


def format_codec(c: dict) -> list[str]:
    """The card's codec lines: what it is, where its labels came from, its weights, lineage."""
    quality = "unknown" if c.get("quality") is None else c["quality"]
    source = c.get("quality_source")
    lam = c.get("lambda")
    lines = [
        f"codec        {c['arch']} quality {quality} ({c.get('metric') or 'metric unknown'}), "
        f"N={c['N']} M={c['M']} (from the weights)",
        f"provenance   weights {c['source']}"
        + (f" {c['checkpoint']}" if c.get("checkpoint") else "")
        + f"; quality {_QUALITY_FROM.get(source, source)}"
        + f"; lambda {'unknown' if lam is None else format(lam, 'g')}",
        f"weights      sha256 {c['weights_sha256']}",
    ]
    if c.get("lineage"):
        lines.append(f"lineage      {_lineage(c['lineage'])}")
    return lines


def _scales_words(m: dict) -> str:
    if "scales_hat" not in manifest_inputs(m):
        return "no scales_hat (the codec has no hyperprior)"
    return f"scales_hat as {m['scales_repr']}"


def _latent_lines(m: dict) -> list[str]:
    """What a reader gets: the inputs, and how the decoder's y_hat is rebuilt bit-exact."""
    lat = m.get("latents")
    if not lat:
        return []
    inputs = " + ".join(manifest_inputs(m))
    lines = [f"latents      {inputs} ({lat['kind']}); y_hat: {lat['y_hat']}"]
    lines.append(f"decoded      y_hat of stock decompress = {lat['decoded_y_hat']}")
    if "means_hat" in lat:
        lines.append(f"means_hat    {lat['means_hat']}")
    return lines


def _task(m: dict) -> str:
    task = manifest_task(m)
    extra = ", ".join(
        f"{k} {f'({len(v)} values)' if isinstance(v, list) else v}"
        for k, v in sorted(task.items())
        if k != "name"
    )
    return task["name"] + (f" ({extra})" if extra else "")


def format_card(m: dict, path: Path | None = None) -> str:
    c, d, t = m["codec"], m["dataset"], m["totals"]
    lines = [
        f"store        {path or ''}",
        *format_codec(c),
        f"dataset      {d['name']} ({d['num_classes']} classes), index sha256 {d['index_sha256'][:16]}...",
        f"task         {_task(m)}; inputs {', '.join(manifest_inputs(m))} (manifest v{m['version']})",
        f"layout       {', '.join(m['formats'])}; {_scales_words(m)}; {m['shard_size']} samples per shard",
        *_latent_lines(m),
        "versions     "
        + ", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items()))
        + f"; entropy coder {m['entropy_coder']}",
        f"made by      {m['command'] or '(python API)'} on {m['created']}",
        "",
        f"{'split':<10} {'indexed':>8} {'stored':>8} {'failed':>7} {'bpp mean':>9} {'bpp median':>11} {'est. bpp':>9}  latent",
    ]
    for name, s in ordered_splits(m):
        shape = (
            "x".join(map(str, s["latent_shape"]))
            if s["latent_shape"]
            else f"mixed ({len(s['latent_shapes'])} sizes)"
        )
        lines.append(
            f"{name:<10} {s['indexed']:>8} {s['stored']:>8} {s['failed']:>7} {_fmt(s['bpp_mean']):>9} "
            f"{_fmt(s['bpp_median']):>11} {_fmt(s['bpp_estimate_mean']):>9}  {shape}"
        )
    lines.append(f"{'total':<10} {t['indexed']:>8} {t['stored']:>8} {t['failed']:>7}")
    sizes = ", ".join(
        f"{k} {format_bytes(v)} ({v / max(t['bitstream_bytes'], 1):.2f}x)"
        for k, v in sorted(t["bytes"].items())
    )
    lines.append(f"\nbitstreams   {format_bytes(t['bitstream_bytes'])}; stored: {sizes}")
    if m["failures"]:
        lines.append(f"\nfailures ({len(m['failures'])}):")
        for reason, n in Counter(f["reason"] for f in m["failures"]).most_common(10):
            lines.append(f"  {n:>5} x {reason}")
        for f in m["failures"][:10]:
            lines.append(f"        {f['path']}: {f['reason']}")
    return "\n".join(lines)

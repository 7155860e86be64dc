"""Rate–distortion evaluation of codecs against JPEG, from real bitstreams.

::

    image folder ──► RGB uint8 (H, W, 3) per image
      │ per codec: pad to /64 ─► model.compress ─► strings ─► model.decompress ─► crop ─► uint8
      │            true bpp = 8 · bytes(all strings) / (H · W)          (CompressAI eval_model)
      │ JPEG (Pillow, optimize=True) at each quality of a sweep: bpp = 8 · file bytes / (H · W)
      ▼
    per image: bpp, PSNR (8-bit pixels), MS-SSIM (pytorch_msssim, data_range 255)
    per codec: means, and JPEG's PSNR / MS-SSIM interpolated at each image's codec rate
    ──► results.json + rd.png (one curve through every codec point, JPEG's sweep beside it)
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from latentcache.atomic import write_json_atomic
from latentcache.errors import ConfigError

__all__ = [
    "DEFAULT_JPEG_QUALITIES",
    "EvalConfig",
    "EvalImage",
    "psnr",
    "ms_ssim_rgb",
    "codec_roundtrip",
    "jpeg_roundtrip",
    "evaluate_codec",
    "evaluate_jpeg",
    "jpeg_at_rates",
    "run_codec_eval",
    "plot_rd",
    "load_eval_images",
    "codec_label",
]

logger = logging.getLogger(__name__)

DEFAULT_JPEG_QUALITIES = (2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95)
MS_SSIM_MIN_SIDE = 161  # pytorch_msssim's 5 scales with an 11-pixel window need > 160


@dataclass(frozen=True)
class EvalConfig:
    out: str
    jpeg_qualities: tuple[int, ...] = DEFAULT_JPEG_QUALITIES
    plot: bool = True

    def __post_init__(self) -> None:
        bad = [q for q in self.jpeg_qualities if not 1 <= q <= 95]
        if bad or not self.jpeg_qualities:
            raise ConfigError(f"Invalid JPEG qualities {bad or '()'}, should be between (1, 95)")

    def to_dict(self) -> dict:
        return {**asdict(self), "jpeg_qualities": list(self.jpeg_qualities)}

    @classmethod
    def from_dict(cls, d: dict) -> EvalConfig:
        return cls(
            out=d["out"],
            jpeg_qualities=tuple(d.get("jpeg_qualities", DEFAULT_JPEG_QUALITIES)),
            plot=d.get("plot", True),
        )


@dataclass(frozen=True)
class EvalImage:
    name: str
    rgb: np.ndarray = field(repr=False)  # (H, W, 3) uint8
    sha256: str = ""


# ---------------------------------------------------------------- metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (inf when identical)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * math.log10(255.0**2 / mse))


def ms_ssim_rgb(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (pytorch_msssim, data_range 255); None for images under 161 px on a side."""
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    from pytorch_msssim import ms_ssim

    t = lambda im: torch.from_numpy(np.array(im, dtype=np.float64)).permute(2, 0, 1)[None]  # noqa: E731
    return float(ms_ssim(t(a), t(b), data_range=255.0))


def _metrics(name: str, rgb: np.ndarray, rec: np.ndarray, nbytes: int, **extra) -> dict:
    h, w = rgb.shape[:2]
    return {
        "name": name,
        "height": h,
        "width": w,
        "bytes": nbytes,
        "bpp": nbytes * 8.0 / (h * w),
        "psnr": psnr(rgb, rec),
        "ms_ssim": ms_ssim_rgb(rgb, rec),
        **extra,
    }


# ---------------------------------------------------------------- codec and JPEG round trips


def codec_roundtrip(model, rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """Real compress/decompress of one image: (reconstruction uint8, bytes of all strings)."""
    from compressai.ops import compute_padding

    h, w = rgb.shape[:2]
    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W)
    pad, unpad = compute_padding(h, w, min_div=64)
    with torch.no_grad():
        enc = model.compress(torch.nn.functional.pad(x, pad, mode="constant", value=0))
        x_hat = model.decompress(enc["strings"], enc["shape"])["x_hat"]
    x_hat = torch.nn.functional.pad(x_hat, unpad).clamp_(0, 1)
    rec = (x_hat[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    nbytes = sum(len(s) for strings in enc["strings"] for s in strings)
    return rec, nbytes


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
    """Pillow JPEG (optimized Huffman tables, default 4:2:0) at ``quality``: (rec, file bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, optimize=True)
    rec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return rec, len(buf.getvalue())


def evaluate_codec(model, images: list[EvalImage]) -> list[dict]:
    """Per-image true bpp, PSNR and MS-SSIM of ``model`` (CPU, eval mode, updated CDFs)."""
    rows = []
    for im in images:
        rec, nbytes = codec_roundtrip(model, im.rgb)
        rows.append(_metrics(im.name, im.rgb, rec, nbytes))
    return rows


def evaluate_jpeg(images: list[EvalImage], qualities: tuple[int, ...]) -> dict[int, list[dict]]:
    """Per JPEG quality, the per-image rows of :func:`evaluate_codec`."""
    return {
        q: [_metrics(im.name, im.rgb, *jpeg_roundtrip(im.rgb, q), quality=q) for im in images]
        for q in qualities
    }


def _interp(x: float, xs: list[float], ys: list[float | None]) -> float | None:
    pts = sorted((a, b) for a, b in zip(xs, ys, strict=True) if b is not None)
    if not pts or not pts[0][0] <= x <= pts[-1][0]:
        return None  # outside JPEG's range: no matched value rather than an extrapolation
    return float(np.interp(x, [p[0] for p in pts], [p[1] for p in pts]))


def jpeg_at_rates(codec_rows: list[dict], jpeg: dict[int, list[dict]]) -> list[dict]:
    """For each image, JPEG's PSNR / MS-SSIM linearly interpolated at the codec's bpp."""
    out = []
    for i, row in enumerate(codec_rows):
        sweep = [jpeg[q][i] for q in sorted(jpeg)]
        bpps = [r["bpp"] for r in sweep]
        out.append(
            {
                "name": row["name"],
                "bpp": row["bpp"],
                "psnr": _interp(row["bpp"], bpps, [r["psnr"] for r in sweep]),
                "ms_ssim": _interp(row["bpp"], bpps, [r["ms_ssim"] for r in sweep]),
            }
        )
    return out


def _mean(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    return float(np.mean(vals)) if vals else None


def _summary(rows: list[dict]) -> dict:
    return {k: _mean(rows, k) for k in ("bpp", "psnr", "ms_ssim")} | {"images": len(rows)}


# ---------------------------------------------------------------- the run


def load_eval_images(files: list[Path], root: Path) -> list[EvalImage]:
    """Decode ``files`` to RGB with the encode stage's loader (EXIF, any mode -> RGB)."""
    from latentcache.images import load_image

    images = []
    for path in files:
        loaded = load_image(Path(path).read_bytes())
        images.append(EvalImage(Path(path).relative_to(root).as_posix(), loaded.rgb, loaded.sha256))
    return images


def codec_label(codec) -> str:
    spec = codec.spec
    where = Path(spec.checkpoint).name if spec.checkpoint else spec.source
    return f"{spec.arch} q{spec.quality if spec.quality is not None else '?'} ({where})"


def _codec_entry(codec, images: list[EvalImage], jpeg: dict[int, list[dict]]) -> dict:
    rows = evaluate_codec(codec.model, images)
    matched = jpeg_at_rates(rows, jpeg)
    entry = {
        "label": codec_label(codec),
        "identity": codec.identity(),
        "lambda": codec.extra.get("lambda"),
        "steps": codec.extra.get("steps"),
        "mean": _summary(rows),
        "per_image": rows,
        "jpeg_at_same_bpp": {"mean": _summary(matched), "per_image": matched},
    }
    logger.info("%s: %s | JPEG at same bpp: %s", entry["label"], entry["mean"], _summary(matched))
    return entry


def run_codec_eval(codecs: list, images: list[EvalImage], config: EvalConfig) -> dict:
    """Evaluate ``codecs`` (loaded :class:`~latentcache.codec.load.Codec`) and JPEG on ``images``.

    Writes ``<out>/results.json`` (and ``<out>/rd.png`` when ``config.plot``); returns the results.
    """
    if not codecs:
        raise ConfigError("no codec to evaluate: give --checkpoint, --codec demo or --codec zoo")
    if not images:
        raise ConfigError("no images to evaluate on")
    jpeg = evaluate_jpeg(images, config.jpeg_qualities)
    results = {
        "format": "latentcache-codec-eval",
        "version": 1,
        "config": config.to_dict(),
        "images": [
            {
                "name": im.name,
                "sha256": im.sha256,
                "height": im.rgb.shape[0],
                "width": im.rgb.shape[1],
            }
            for im in images
        ],
        "codecs": sorted(
            (_codec_entry(c, images, jpeg) for c in codecs), key=lambda e: e["mean"]["bpp"]
        ),
        "jpeg": [
            {"quality": q, "mean": _summary(rows), "per_image": rows} for q, rows in jpeg.items()
        ],
    }
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", results)
    if config.plot:
        plot_rd(results, out / "rd.png")
    return results


def plot_rd(results: dict, path: Path) -> Path:
    """PSNR and MS-SSIM against true bpp: the codecs as one curve, JPEG's sweep as another."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    codecs, jpeg = results["codecs"], results["jpeg"]
    for ax, key, title in zip(axes, ("psnr", "ms_ssim"), ("PSNR (dB)", "MS-SSIM"), strict=True):
        _curve(ax, [e["mean"] for e in codecs], key, "o-", "learned codec")
        _curve(ax, [j["mean"] for j in jpeg], key, "s--", "JPEG (Pillow)")
        for e in codecs:
            if e["mean"].get(key) is not None:
                ax.annotate(f"q{e['identity']['quality']}", (e["mean"]["bpp"], e["mean"][key]))
        ax.set_xlabel("true bpp")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(f"Rate–distortion on {len(results['images'])} images")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _curve(ax, means: list[dict], key: str, style: str, label: str) -> None:
    pts = sorted((m["bpp"], m[key]) for m in means if m.get(key) is not None)
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)

"""What a fine-tuning run leaves behind, and the rates measured from real bytes.

::

    trained codec ─► update(force=True) ─► codec.pt (save_codec_checkpoint + lineage)
                 ─► load_codec(codec.pt) ─► its identity (sha256 of the loaded weights)
    classifier   ─► last.pt in the `latentcache train` format, codec = the new identity
                    (so `eval` refuses the parent's store and accepts the re-encoded one)
    eval split   ─► encode_batch (real compress, latents decoded from the bytes), parent codec
                    + parent classifier vs new codec + new classifier ─► top-1, true bpp
                 ─► summary.json (true bpp beside the training likelihood bpp)
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from latentcache.errors import SampleError

__all__ = [
    "CODEC_NAME",
    "SUMMARY_NAME",
    "finish",
    "save_codec",
    "write_classifier_run",
    "measure_from_bytes",
    "format_summary",
]

logger = logging.getLogger(__name__)

CODEC_NAME, SUMMARY_NAME, RUN_CHECKPOINT = "codec.pt", "summary.json", "last.pt"


def save_codec(parts, out: Path) -> Path:
    """update(force=True), then a checkpoint that `encode --checkpoint` loads, with lineage."""
    from latentcache.codec.load import save_codec_checkpoint

    cfg, model = parts.config, parts.model.to("cpu").eval()
    model.update(force=True)
    lineage = {
        "parent_weights_sha256": parts.parent.weights_sha256,
        "mode": cfg.mode,
        "beta": cfg.beta,
        "gamma": cfg.gamma,
        "epochs": cfg.epochs,
    }
    return save_codec_checkpoint(
        out / CODEC_NAME, model, parts.parent.spec, lmbda=parts.lmbda, lineage=lineage
    )


def write_classifier_run(parts, new_codec, out: Path) -> Path:
    """``last.pt`` as `latentcache train` writes it; its codec is the fine-tuned one."""
    from latentcache.train.checkpoint import codec_identity, save_checkpoint

    cfg, parent = parts.config, parts.classifier_state
    train_config = dict(parent["config"]) | {
        "out": str(out),
        "epochs": cfg.epochs if cfg.trains_classifier else parent["config"].get("epochs"),
    }
    if "command" in parent["config"]:  # latent runs record it; pixel runs do not
        train_config["command"] = cfg.command
    state = {
        "model": {k: v.detach().cpu() for k, v in parts.classifier.state_dict().items()},
        "epoch": cfg.epochs,
        "config": train_config,
        "codec": codec_identity(new_codec.identity()),
        "classes": list(parent["classes"]),
        "inputs": list(parent.get("inputs") or parts.classifier.inputs),
        "finetune": {"config": cfg.to_dict(), "parent_run": str(cfg.classifier)},
    }
    if not parts.pixels:  # a latent classifier: its store's statistics and channels
        state |= {"stats": parent["stats"], "num_channels": int(new_codec.widths[1])}
    return save_checkpoint(out / RUN_CHECKPOINT, state)


def _classifier_inputs(results, table: torch.Tensor, scales_repr: str) -> dict:
    y_hat = torch.from_numpy(np.stack([r.y_hat for r in results])).float()
    if scales_repr == "index":
        scales = table[torch.from_numpy(np.stack([r.scale_index for r in results])).long()]
    else:
        scales = torch.from_numpy(np.stack([r.scales_hat for r in results])).float()
    return {"y_hat": y_hat, "scales_hat": scales}


@torch.no_grad()
def measure_from_bytes(
    codec_model, classifier, state, scales_repr: str, loader, device: torch.device
) -> dict:
    """Real compress of every image; classifier on the latents decoded from the bytes."""
    from latentcache.codec.latents import encode_batch
    from latentcache.finetune.parts import make_transform
    from latentcache.finetune.pixels import classifier_inputs

    table = codec_model.gaussian_conditional.scale_table.float()
    transform = make_transform(state, train=False) if classifier is not None else None
    if classifier is not None:
        classifier = classifier.to(device).eval()
    bpp, est, correct, failed = [], [], 0, 0
    for batch in loader:
        results = encode_batch(codec_model, batch["x"], batch["sizes"], device=str(device))
        keep = [i for i, r in enumerate(results) if not isinstance(r, SampleError)]
        failed += len(results) - len(keep)
        results = [results[i] for i in keep]
        if not results:
            continue
        bpp += [r.bpp for r in results]
        est += [r.bpp_estimate for r in results]
        if transform is not None:
            inputs = _classifier_inputs(results, table, scales_repr)
            sizes = [batch["sizes"][i] for i in keep]
            inputs = classifier_inputs(codec_model, inputs, sizes, state)
            xs = transform({k: v.to(device) for k, v in inputs.items()}, False, None)
            labels = batch["label"][keep].to(device)
            correct += int((classifier(*xs).argmax(1) == labels).sum())
    n = len(bpp)
    return {
        "images": n + failed,
        "failed": failed,
        "bpp_true_mean": float(np.mean(bpp)) if n else None,
        "bpp_estimate_mean": float(np.mean(est)) if n else None,
        "top1": correct / n if transform is not None and n else None,
    }


def _load_saved(path: Path, parent):
    from latentcache.codec.load import load_codec

    spec = replace(parent.spec, source="checkpoint", checkpoint=str(path))
    return load_codec(spec)


def finish(parts, eval_loader, train_bpp: float | None) -> dict:
    """Save codec.pt and the classifier run, measure parent vs new from bytes, write summary."""
    from latentcache.finetune.parts import build_classifier

    cfg, out = parts.config, Path(parts.config.out)
    path = save_codec(parts, out)
    new = _load_saved(path, parts.parent)
    if parts.classifier is not None:
        write_classifier_run(parts, new, out)
    summary = {
        "mode": cfg.mode,
        "preset": cfg.preset,
        "beta": cfg.beta,
        "gamma": cfg.gamma,
        "lambda": parts.lmbda,
        "lambda_source": parts.lmbda_source,
        "epochs": cfg.epochs,
        "codec_checkpoint": str(path),
        "parent_codec": parts.parent.identity(),
        "codec": new.identity(),
        "train_bpp_likelihood": train_bpp,
        "split": parts.eval_split,
    }
    if eval_loader is not None:
        state = parts.classifier_state
        old = build_classifier(state, parts.parent) if state is not None else None
        args = (cfg.scales_repr, eval_loader, parts.device)
        summary["frozen"] = measure_from_bytes(parts.parent.model, old, state, *args)
        summary["finetuned"] = measure_from_bytes(new.model, parts.classifier, state, *args)
    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, sort_keys=True))
    logger.debug("\n%s", format_summary(summary))
    return summary


def format_summary(summary: dict) -> str:
    """A small table: frozen codec vs fine-tuned, true bpp from bytes beside the estimate."""

    def cell(v, fmt):
        return format(v, fmt) if v is not None else "-"

    lines = [f"{summary['mode']} fine-tuning, split {summary.get('split')}:"]
    lines.append(f"  {'':<12} {'codec sha256':<14} {'top-1':>7} {'true bpp':>9} {'est. bpp':>9}")
    for name, key, codec in (
        ("frozen", "frozen", summary["parent_codec"]),
        ("fine-tuned", "finetuned", summary["codec"]),
    ):
        m = summary.get(key) or {}
        lines.append(
            f"  {name:<12} {codec['weights_sha256'][:12]:<14} {cell(m.get('top1'), '7.4f')} "
            f"{cell(m.get('bpp_true_mean'), '9.4f')} {cell(m.get('bpp_estimate_mean'), '9.4f')}"
        )
    lines.append(
        f"  training likelihood bpp (last epoch, with noise): "
        f"{cell(summary.get('train_bpp_likelihood'), '.4f')}; true bpp is from the bytes"
    )
    return "\n".join(lines)

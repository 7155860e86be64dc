"""``run_finetune``: fine-tune a codec and/or its classifier on images, then write a codec
checkpoint and a classifier run folder, and measure both from real bytes.

::

    FinetuneConfig ─► build_index(dataset) ─► ImageSplit(train), ImageSplit(eval)
      │ parts.py: load_codec(parent) ─► trainable copy   classifier run (last.pt) ─► classifier
      │   (the parent's codec identity must match the classifier's)
      ▼ per epoch (seeded from (seed, epoch): data order, noise, augmentation ─► --resume)
    batch x ─► codec_forward ─► compute_loss ─► Adam (codec) / Adam|SGD (classifier) / aux Adam
      │ eval split: top-1 on straight-through y_hat, likelihood bpp ─► metrics.jsonl
      │ state.py: state.pt (codec, classifier, optimizers, scaler, epoch)
      ▼
    finish (outputs.py): update(force=True) ─► codec.pt (lineage) ─► last.pt (classifier run,
    codec identity = the new codec) ─► real compress of the eval split, parent vs new ─► summary.json
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from latentcache.errors import ConfigError
from latentcache.finetune.config import FinetuneConfig
from latentcache.finetune.data import image_loader, load_split
from latentcache.finetune.objective import codec_forward, compute_loss, eval_forward
from latentcache.finetune.outputs import finish
from latentcache.finetune.parts import Parts, load_parts, make_transform
from latentcache.finetune.pixels import classifier_inputs
from latentcache.finetune.state import STATE_NAME, build_optimizers, restore_state, save_state

__all__ = ["run_finetune", "Parts", "load_parts", "STATE_NAME", "METRICS_NAME", "CONFIG_NAME"]

logger = logging.getLogger(__name__)

METRICS_NAME, CONFIG_NAME = "metrics.jsonl", "finetune.json"


# ---------------------------------------------------------------- one epoch


def _amp(parts: Parts):
    from latentcache.train.loop import amp_context

    on = parts.config.amp and parts.device.type == "cuda"
    return lambda: amp_context(parts.device, on)


def _step(parts: Parts, batch: dict, opts, scaler, codec_on: bool, generator) -> dict:
    cfg = parts.config
    x = batch["x"].to(parts.device, non_blocking=True)
    labels = batch["label"].to(parts.device, non_blocking=True)
    for o in opts.values():
        o.zero_grad(set_to_none=True)
    with nullcontext() if codec_on else torch.no_grad():
        out = codec_forward(
            parts.model, x, cfg.scales_repr, codec_on and cfg.gamma > 0, _amp(parts)
        )
    out.inputs = classifier_inputs(parts.model, out.inputs, batch["sizes"], parts.classifier_state)
    terms = compute_loss(
        out, x, labels, parts.classifier, parts.transform, generator,
        (cfg.beta, cfg.gamma, parts.lmbda), _amp(parts),
    )  # fmt: skip
    if not math.isfinite(float(terms.loss.detach())):
        raise FloatingPointError("fine-tuning loss is not finite; lower --lr or --beta")
    steps = [k for k in ("codec", "classifier") if k in opts and (k != "codec" or codec_on)]
    if not steps:
        raise ConfigError(
            f"nothing trains in this epoch (mode {cfg.mode}, codec_epochs {cfg.codec_epochs})"
        )
    scaler.scale(terms.loss).backward()
    if "codec" in steps and cfg.clip_max_norm > 0:
        scaler.unscale_(opts["codec"])
        params = [p for g in opts["codec"].param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_max_norm)
    for k in steps:
        scaler.step(opts[k])
    scaler.update()
    record = {"loss": float(terms.loss.detach()), "bpp": float(terms.bpp.detach())}
    if codec_on and "aux" in opts:
        aux_loss = parts.model.aux_loss()
        aux_loss.backward()
        opts["aux"].step()
        record["aux"] = float(aux_loss.detach())
    if terms.ce is not None:
        record["ce"] = float(terms.ce.detach())
        record["top1"] = float((terms.logits.argmax(1) == labels).float().mean())
    if terms.mse is not None:
        record["mse"] = float(terms.mse.detach())
    return record


def _set_modes(parts: Parts, epoch: int) -> None:
    cfg = parts.config
    parts.model.train(cfg.codec_trains_in(epoch))
    if parts.classifier is None:
        return
    parts.classifier.train(cfg.trains_classifier)  # C-FT: eval mode, BatchNorm statistics stay put
    if cfg.trains_classifier and not cfg.bn_updates_in(epoch):
        for m in parts.classifier.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()  # normalise with the running statistics, as at test time


def _train_epoch(parts: Parts, loader, opts, scaler, epoch: int) -> dict:
    cfg = parts.config
    seed = cfg.seed * 1_000_003 + epoch
    torch.manual_seed(seed)  # the rate term's noise
    generator = torch.Generator().manual_seed(seed)  # the latent crops and flips
    loader.batch_sampler.set_epoch(epoch)
    codec_on = cfg.codec_trains_in(epoch)
    _set_modes(parts, epoch)
    total = min(len(loader), cfg.max_batches or len(loader))
    records, start = [], time.perf_counter()
    with _progress(total, cfg.progress, f"finetune {epoch + 1}/{cfg.epochs}") as bar:
        for i, batch in enumerate(loader):
            if i >= total:
                break
            records.append(
                _step(parts, batch, opts, scaler, codec_on, generator) | {"n": len(batch["label"])}
            )
            bar.update()
            bar.set_postfix(loss=f"{records[-1]['loss']:.3f}", bpp=f"{records[-1]['bpp']:.3f}")
    n = sum(r["n"] for r in records)
    keys = sorted({k for r in records for k in r} - {"n"})
    out = {f"train_{k}": sum(r[k] * r["n"] for r in records) / n for k in keys}
    return out | {
        "train_samples": n,
        "train_time_s": time.perf_counter() - start,
        "codec_trained": codec_on,
    }


@torch.no_grad()
def evaluate_likelihood(parts: Parts, loader) -> dict:
    """Top-1 on the test-time latents (rounded, no noise) and the likelihood bpp."""
    parts.model.eval()
    transform = make_transform(parts.classifier_state, train=False) if parts.classifier else None
    if parts.classifier is not None:
        parts.classifier.eval()
    correct = seen = pixels = 0
    bits = 0.0
    for batch in loader:
        x = batch["x"].to(parts.device)
        inputs, image_bits = eval_forward(parts.model, x, parts.config.scales_repr, _amp(parts))
        inputs = classifier_inputs(parts.model, inputs, batch["sizes"], parts.classifier_state)
        bits += float(image_bits.sum())
        pixels += sum(h * w for h, w in batch["sizes"])
        if transform is not None:
            with _amp(parts)():
                logits = parts.classifier(*transform(inputs, False, None)).float()
            correct += int((logits.argmax(1).cpu() == batch["label"]).sum())
        seen += len(batch["label"])
    result = {"eval_bpp_likelihood": bits / max(pixels, 1), "eval_samples": seen}
    if transform is not None:
        result["eval_top1"] = correct / max(seen, 1)
    return result


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="batch", desc=desc, leave=False,
                disable=not (enabled and sys.stderr.isatty()))  # fmt: skip


# ---------------------------------------------------------------- the run


def run_finetune(config: FinetuneConfig) -> dict:
    """Fine-tune as ``config.mode`` says; write codec.pt, the classifier run and summary.json."""
    from latentcache.train.distributed import resolve_device

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    parts = load_parts(config, device)
    out = Path(config.out)
    opts = build_optimizers(parts)
    fp16 = config.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    start, train_bpp = restore_state(out, parts, opts, scaler)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    _keep_metrics(out / METRICS_NAME, start)
    pin = device.type == "cuda"
    train = load_split(parts.index, config.train_split)
    loader = image_loader(train, config.batch_size, True, config.seed, config.workers, pin)
    evals = None
    if parts.eval_split is not None:
        evals = image_loader(
            load_split(parts.index, parts.eval_split),
            config.batch_size,
            False,
            0,
            config.workers,
            pin,
        )
    logger.info(
        "finetune %s: %d train images, eval %s, beta=%g gamma=%g lambda=%s, epochs %d..%d",
        config.mode, len(train), parts.eval_split, config.beta, config.gamma, parts.lmbda, start + 1, config.epochs,
    )  # fmt: skip
    for epoch in range(start, config.epochs):
        record = {"epoch": epoch + 1} | _train_epoch(parts, loader, opts, scaler, epoch)
        train_bpp = record["train_bpp"]
        if evals is not None:
            record |= evaluate_likelihood(parts, evals)
        with open(out / METRICS_NAME, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        save_state(out, epoch + 1, parts, opts, scaler, train_bpp)
        logger.info("epoch %d/%d %s", epoch + 1, config.epochs,
                    " ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float)))  # fmt: skip
    return finish(parts, evals, train_bpp)


def _keep_metrics(path: Path, start: int) -> None:
    kept = []
    if start and path.exists():
        kept = [
            ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["epoch"] <= start
        ]
    path.write_text("".join(ln + "\n" for ln in kept))

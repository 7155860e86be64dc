"""``run_finetune``: fine-tune a codec and/or its classifier on images, then write a codec
checkpoint and a classifier run folder, and measure both from real bytes.

::

    FinetuneConfig ─► build_index(dataset) ─► ImageSplit(train), ImageSplit(eval)
      │ load_codec(parent) ─► trainable copy       classifier run (last.pt) ─► classifier
      │   (the parent's codec identity must match the classifier's)
      ▼ per epoch (seeded from (seed, epoch): data order, noise, augmentation ─► --resume)
    batch x ─► codec_forward ─► compute_loss ─► Adam (codec) / Adam|SGD (classifier) / aux Adam
      │ eval split: top-1 on straight-through y_hat, likelihood bpp ─► metrics.jsonl
      │ state.pt (codec, classifier, optimizers, scaler, epoch)
      ▼
    finish (outputs.py): update(force=True) ─► codec.pt (lineage) ─► last.pt (classifier run,
    codec identity = the new codec) ─► real compress of the eval split, parent vs new ─► summary.json
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from latentcache.errors import CodecMismatchError, ConfigError
from latentcache.finetune.config import FinetuneConfig
from latentcache.finetune.data import choose_eval_split, image_loader, load_split
from latentcache.finetune.objective import (
    check_architecture,
    codec_forward,
    codec_parameters,
    compute_loss,
    eval_forward,
    freeze,
)

__all__ = ["run_finetune", "Parts", "load_parts", "STATE_NAME", "METRICS_NAME", "CONFIG_NAME"]

logger = logging.getLogger(__name__)

STATE_NAME, METRICS_NAME, CONFIG_NAME = "state.pt", "metrics.jsonl", "finetune.json"
# settings a resumed run may change: they do not alter what the run computes
_RESUME_FREE = ("epochs", "resume", "progress", "command", "workers", "device", "amp")


class Parts:
    """The loaded pieces of a run: dataset, parent codec, trainable codec, classifier."""

    def __init__(self, config: FinetuneConfig, device: torch.device) -> None:
        from latentcache.codec.load import load_codec
        from latentcache.codec.train import lambda_for
        from latentcache.datasets import build_index

        self.config, self.device = config, device
        self.index = build_index(config.dataset, config.data_root, **config.dataset_options)
        self.parent = load_codec(config.codec)
        check_architecture(self.parent.model)
        extra = self.parent.extra
        self.lmbda = float(
            config.lmbda
            or extra.get("lambda")
            or extra.get("lmbda")
            or lambda_for(self.parent.spec.metric, self.parent.spec.quality)
        )
        self.model = copy.deepcopy(self.parent.model).to(device)
        self.classifier_state = _load_classifier_state(config, self.parent, self.index)
        self.classifier = None
        self.transform = None
        if self.classifier_state is not None:
            self.classifier = build_classifier(self.classifier_state, self.parent).to(device)
            self.transform = make_transform(self.classifier_state, train=True)
        self.eval_split = choose_eval_split(self.index, config.train_split, config.eval_split)


def _load_classifier_state(config: FinetuneConfig, parent, index) -> dict | None:
    from latentcache.train.checkpoint import codec_identity, load_checkpoint
    from latentcache.train.evaluate import find_checkpoint

    if config.classifier is None:
        return None
    path = find_checkpoint(config.classifier, "last")
    state = load_checkpoint(path)
    trained_on, parent_id = codec_identity(state["codec"]), codec_identity(parent.identity())
    differ = [k for k in parent_id if k in trained_on and trained_on[k] != parent_id[k]]
    if differ:
        raise CodecMismatchError(
            f"classifier {path} was trained on latents of {_describe(trained_on)}, but the codec "
            f"to fine-tune is {_describe(parent_id)} (differs in {differ})"
        )
    if list(state["classes"]) != list(index.classes):
        raise ConfigError(
            f"classifier {path} knows classes {list(state['classes'])[:5]}... "
            f"({len(state['classes'])}); dataset {index.name!r} has {list(index.classes)[:5]}... "
            f"({len(index.classes)})"
        )
    return state


def _describe(identity: dict) -> str:
    return (
        f"{identity.get('arch')} quality={identity.get('quality')} metric={identity.get('metric')} "
        f"weights_sha256={str(identity.get('weights_sha256'))[:12]}"
    )


def build_classifier(state: dict, codec) -> torch.nn.Module:
    """The classifier a ``latentcache train`` checkpoint holds (latent inputs only)."""
    from latentcache.train.models import LATENT_INPUTS, create_classifier

    cfg = state["config"]
    kwargs = {**cfg.get("model_kwargs", {}), "pretrained": False}
    model = create_classifier(cfg["model"], codec.widths[1], len(state["classes"]), **kwargs)
    bad = [i for i in model.inputs if i not in LATENT_INPUTS]
    if bad:
        raise ConfigError(f"finetune trains latent classifiers; {cfg['model']} takes {bad}")
    model.load_state_dict(state["model"])
    return model


def make_transform(state: dict, train: bool):
    """The classifier's own normalisation (its training store's stats) and augmentation."""
    from latentcache.train.augment import AugmentConfig, LatentStats, LatentTransform

    cfg = state["config"]
    augment = AugmentConfig(resize=cfg["resize"], crop=cfg["crop"], flip=cfg["flip"] and train)
    inputs = state.get("inputs") or list(cfg.get("model_kwargs", {}).get("inputs", ["y_hat"]))
    return LatentTransform(inputs, LatentStats.from_dict(state["stats"]), augment)


def load_parts(config: FinetuneConfig, device: torch.device) -> Parts:
    return Parts(config, device)


# ---------------------------------------------------------------- optimizers and state


def build_optimizers(parts: Parts) -> dict[str, torch.optim.Optimizer]:
    cfg, opts = parts.config, {}
    trainable = []
    if cfg.trains_codec:
        net, aux = codec_parameters(parts.model, cfg.trains_g_s)
        opts["codec"] = torch.optim.Adam(net, lr=cfg.lr)
        opts["aux"] = torch.optim.Adam(aux, lr=cfg.aux_lr)
        trainable = net + aux
    freeze(parts.model, trainable)
    if parts.classifier is not None:
        freeze(parts.classifier, None if cfg.trains_classifier else [])
    if cfg.trains_classifier:
        lr, params = cfg.classifier_lr or cfg.lr, parts.classifier.parameters()
        opts["classifier"] = (
            torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)
            if cfg.classifier_optimizer == "sgd"
            else torch.optim.Adam(params, lr=lr)
        )
    return opts


def _save_state(out: Path, epoch: int, parts: Parts, opts, scaler, train_bpp) -> None:
    from latentcache.train.checkpoint import save_checkpoint

    state = {
        "epoch": epoch,
        "config": parts.config.to_dict(),
        "codec": parts.model.state_dict(),
        "classifier": parts.classifier.state_dict() if parts.classifier is not None else {},
        "optimizers": {k: o.state_dict() for k, o in opts.items()},
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "train_bpp": train_bpp,
    }
    save_checkpoint(out / STATE_NAME, state)


def _restore(out: Path, parts: Parts, opts, scaler) -> tuple[int, float | None]:
    path = out / STATE_NAME
    if not path.is_file():
        if parts.config.resume:
            logger.info("--resume: no %s in %s yet, starting a new run", STATE_NAME, out)
            return 0, None
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError(
                f"{out} is not empty; pass --resume to continue a run, or another --out"
            )
        return 0, None
    if not parts.config.resume:
        raise ConfigError(
            f"{out} already holds a run ({STATE_NAME}); pass --resume or another --out"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = FinetuneConfig.from_dict(state["config"]).to_dict()
    now = parts.config.to_dict()
    differ = sorted(k for k in now if k not in _RESUME_FREE and now[k] != saved[k])
    if differ:
        raise ConfigError(
            f"cannot resume {path}: it was run with "
            + ", ".join(f"{k}={saved[k]!r} (now {now[k]!r})" for k in differ)
        )
    parts.model.load_state_dict(state["codec"])
    if parts.classifier is not None:
        parts.classifier.load_state_dict(state["classifier"])
    for k, o in opts.items():
        o.load_state_dict(state["optimizers"][k])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    logger.info("resuming %s after epoch %d", out, state["epoch"])
    return int(state["epoch"]), state.get("train_bpp")


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
    from latentcache.finetune.outputs import finish
    from latentcache.train.distributed import resolve_device

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    parts = load_parts(config, device)
    out = Path(config.out)
    opts = build_optimizers(parts)
    fp16 = config.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    start, train_bpp = _restore(out, parts, opts, scaler)
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
        "finetune %s: %d train images, eval %s, beta=%g gamma=%g lambda=%g, epochs %d..%d",
        config.mode, len(train), parts.eval_split, config.beta, config.gamma, parts.lmbda, start + 1, config.epochs,
    )  # fmt: skip
    for epoch in range(start, config.epochs):
        record = {"epoch": epoch + 1} | _train_epoch(parts, loader, opts, scaler, epoch)
        train_bpp = record["train_bpp"]
        if evals is not None:
            record |= evaluate_likelihood(parts, evals)
        with open(out / METRICS_NAME, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        _save_state(out, epoch + 1, parts, opts, scaler, train_bpp)
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

"""``run_detection_finetune``: chamain2021's three settings on a Faster R-CNN of decoded
images, from a detection dataset's images, measured from real bytes.

::

    DetectionFinetuneConfig ─► build_index (a detection dataset) ─► DetectionImages train/eval
      │ load_codec(parent) ─► trainable copy     detector: a run folder (OUT/detector.pt of an
      │                                          earlier fine-tuning) or a registered model
      ▼ per epoch: DetectionFinetuner.step (detection.py) ─► metrics.jsonl
    finish: codec.pt (update(force=True), lineage) ─► detector.pt (codec = the new identity)
      ─► eval split, parent codec + parent detector vs new codec + new detector: real
         compress, y_hat from the bytes, g_s, 8-bit image cut to the original, detector,
         COCO mAP (DetectionMeter), true bpp from the bytes ─► summary.json

The detector reads decoded pixels (chamain2021's setting); ``input = "original"`` trains it
on the uncompressed images instead (mode task: the baseline without a codec; no bpp). A detector of latents fine-tunes
through :class:`~latentcache.finetune.detection.DetectionFinetuner` as well, but needs the
normalisation statistics of the detection store it was trained on.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import torch

from latentcache.codec.spec import CodecSpec
from latentcache.errors import ConfigError

__all__ = [
    "DetectionFinetuneConfig",
    "run_detection_finetune",
    "load_detector_run",
    "DETECTOR_NAME",
]

logger = logging.getLogger(__name__)

DETECTOR_NAME, METRICS_NAME, SUMMARY_NAME = "detector.pt", "metrics.jsonl", "summary.json"
INPUTS = ("decoded", "original")


@dataclass(frozen=True)
class DetectionFinetuneConfig:
    """Everything ``latentcache finetune --task detection`` needs."""

    dataset: str
    out: str
    mode: str = "joint"
    input: str = "decoded"  # what the detector reads: "decoded" (g_s(y_hat)) or "original"
    detector: str | None = None  # a fine-tuning run folder holding detector.pt
    detector_model: str = "fasterrcnn-resnet50-fpn"  # when no run is given
    detector_kwargs: dict = field(default_factory=dict)
    codec: CodecSpec = field(default_factory=CodecSpec)
    data_root: str | None = None
    dataset_options: dict = field(default_factory=dict)
    beta: float = 1.0
    lmbda: float | None = None  # recorded with the codec; the objective has no distortion term
    epochs: int = 1
    batch_size: int = 2
    lr: float = 1e-4
    detector_lr: float | None = None
    aux_lr: float = 1e-3
    scales_repr: str = "index"
    train_split: str = "train"
    eval_split: str | None = None
    max_batches: int | None = None
    device: str = "auto"
    seed: int = 0
    command: str = ""
    # few-shot (TFA; detection_fewshot.py): these classes only, a k-shot sample, what trains,
    # the classes whose mean AP50 is the summary's nap50
    classes: list[str] | None = None
    shots: int | None = None
    train_only: str = "all"
    novel: list[str] | None = None

    def __post_init__(self) -> None:
        from latentcache.finetune.detection import MODES

        if self.mode not in MODES:
            raise ConfigError(f'Invalid mode "{self.mode}", should be one of {MODES}')
        if self.input not in INPUTS:
            raise ConfigError(f'Invalid input "{self.input}", should be one of {INPUTS}')
        if self.input == "original" and self.mode != "task":
            raise ConfigError(
                f"input original: no codec in the loop, so mode task only, not {self.mode}"
            )
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: should be >= 1")
        if self.beta < 0:
            raise ConfigError(f"beta={self.beta}: should be >= 0")
        from latentcache.finetune.detection_fewshot import TRAIN_ONLY

        if self.train_only not in TRAIN_ONLY:
            raise ConfigError(f'Invalid train_only "{self.train_only}", one of {TRAIN_ONLY}')
        if self.train_only != "all" and self.mode != "task":
            raise ConfigError(f"train_only {self.train_only}: mode task only, not {self.mode}")
        if self.shots is not None and self.shots < 1:
            raise ConfigError(f"shots={self.shots}: should be >= 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codec"] = self.codec.to_dict()
        return d


def load_detector_run(folder: str | Path) -> dict:
    """The detector state a detection fine-tuning run wrote (``detector.pt``)."""
    from latentcache.train.checkpoint import load_checkpoint

    state = load_checkpoint(Path(folder) / DETECTOR_NAME)
    missing = [k for k in ("model", "config", "classes", "inputs") if k not in state]
    if missing:
        raise ConfigError(f"{Path(folder) / DETECTOR_NAME} is not a detector run (no {missing})")
    return state


def _detector(config: DetectionFinetuneConfig, classes: list[str]):
    from latentcache.finetune.detection_fewshot import grow_detector
    from latentcache.train.fewshot import freeze_but_box_predictor
    from latentcache.train.models.detector_registry import create_detector

    state = load_detector_run(config.detector) if config.detector else None
    name = state["config"]["model"] if state else config.detector_model
    kwargs = dict(state["config"]["model_kwargs"]) if state else dict(config.detector_kwargs)
    if state:  # its weights replace whatever the trunk would start from
        known = list(state["classes"])
        model = create_detector(name, 3, len(known), **{**kwargs, "pretrained": False})
        model.load_state_dict(state["model"])
        grow_detector(model, known, classes, str(config.detector))  # a base run: TFA
        model.initialised_from = {"kind": "run", "run": str(config.detector)}
    else:  # a new detector: its trunk from ImageNet when torch hub's cache holds it
        model = create_detector(name, 3, len(classes), **kwargs)
    if config.train_only == "box_predictor":
        freeze_but_box_predictor(model)
    if list(model.inputs) != ["image"]:
        raise ConfigError(
            f"{name} reads latents; this run fine-tunes detectors of decoded images "
            "(a latent detector needs its detection store's statistics)"
        )
    return model, {"model": name, "model_kwargs": kwargs}


def _lambda(config: DetectionFinetuneConfig, parent) -> float | None:
    from latentcache.codec.spec import lambda_for

    given = config.lmbda or parent.extra.get("lambda") or parent.extra.get("lmbda")
    if given:
        return float(given)
    spec = parent.spec
    return float(lambda_for(spec.metric, spec.quality)) if spec.metric and spec.quality else None


def _loaders(config: DetectionFinetuneConfig, index, classes: list[str]):
    from latentcache.finetune.data import choose_eval_split
    from latentcache.finetune.detection import detection_loader
    from latentcache.finetune.detection_fewshot import fewshot_images

    eval_split = choose_eval_split(index, config.train_split, config.eval_split)
    train = fewshot_images(config, index, config.train_split, classes, True)
    loader = detection_loader(train, config.batch_size, True, config.seed)
    evals = None
    if eval_split is not None:
        evals = fewshot_images(config, index, eval_split, classes, False)
        evals = detection_loader(evals, 1, False)
    return loader, evals, eval_split


def _train(config, tuner, loader, out: Path, device) -> float | None:
    bpp = None
    with open(out / METRICS_NAME, "w") as log:
        for epoch in range(config.epochs):
            torch.manual_seed(config.seed * 1_000_003 + epoch)  # the rate term's noise
            loader.batch_sampler.set_epoch(epoch)
            records = []
            for i, batch in enumerate(loader):
                if config.max_batches is not None and i >= config.max_batches:
                    break
                targets = [_to(t, device) for t in batch["targets"]]
                records.append(tuner.step(batch["x"].to(device), targets))
            mean = {k: sum(r[k] for r in records) / len(records) for k in records[0]}
            log.write(json.dumps({"epoch": epoch + 1, "batches": len(records)} | mean) + "\n")
            logger.info("epoch %d/%d %s", epoch + 1, config.epochs,
                        " ".join(f"{k}={v:.4g}" for k, v in mean.items()))  # fmt: skip
            bpp = mean["bpp"]
    return bpp


def _to(t: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()}


@torch.no_grad()
def measure_detection_from_bytes(
    codec_model, detector, classes, loader, device, novel=None
) -> dict:
    """Real compress of every eval image; the detector on g_s of the decoded y_hat (no
    ``codec_model``: on the original images); per-class AP50, and nAP50 over ``novel``."""
    import numpy as np

    from latentcache.codec.latents import encode_batch
    from latentcache.errors import SampleError
    from latentcache.finetune.detection import decoded_images

    detector = detector.to(device).eval()
    meter, bpp, failed = _Meter(len(classes)), [], 0
    if codec_model is None:  # the original images
        for batch in loader:
            targets = batch["targets"]
            images = decoded_images(batch["x"].to(device), targets)
            meter.update(detector(images, targets=targets), targets)
        head = {"images": len(loader.dataset), "failed": 0, "bpp_true_mean": None}
        return head | meter.summary(classes, novel)
    for batch in loader:
        sizes = [t["image_size"] for t in batch["targets"]]
        results = encode_batch(codec_model, batch["x"], sizes, device=str(device))
        for r, t in zip(results, batch["targets"], strict=True):
            if isinstance(r, SampleError):
                failed += 1
                continue
            bpp.append(r.bpp)
            y_hat = torch.from_numpy(r.y_hat[None].astype("float32")).to(device)
            image = decoded_images(codec_model.g_s(y_hat), [t])
            meter.update(detector(image, targets=[t]), [t])
    summary = meter.summary(classes, novel) if bpp else {}
    n = len(bpp)
    return {"images": n + failed, "failed": failed,
            "bpp_true_mean": float(np.mean(bpp)) if n else None} | summary  # fmt: skip


class _Meter:
    """DetectionMeter, plus the predictions kept for per-class AP50 (few-shot's nAP50)."""

    def __init__(self, num_classes: int) -> None:
        from latentcache.train.detection_metric import DetectionMeter

        self.meter, self.preds, self.targets = DetectionMeter(num_classes), [], []

    def update(self, predictions, targets) -> None:
        self.meter.update(predictions, targets)
        keep = ("boxes", "labels", "scores", "iscrowd")
        for src, dst in ((predictions, self.preds), (targets, self.targets)):
            dst += [{k: v.detach().cpu() for k, v in d.items() if k in keep} for d in src]

    def summary(self, classes, novel=None) -> dict:
        from latentcache.train.fewshot import class_ap50, novel_ap50

        out = self.meter.summary(classes)
        out["per_class_ap50"] = class_ap50(self.preds, self.targets, list(classes))
        if novel:
            out["nap50"] = novel_ap50(out["per_class_ap50"], novel)
        return out


def run_detection_finetune(config: DetectionFinetuneConfig) -> dict:
    """Fine-tune as ``config.mode`` says; write codec.pt, detector.pt and summary.json."""
    from latentcache.codec.load import load_codec
    from latentcache.datasets import build_index
    from latentcache.finetune.detection import DetectionFinetuner
    from latentcache.train.distributed import resolve_device

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; choose another --out")
    index = build_index(config.dataset, config.data_root, **config.dataset_options)
    if index.task != "detection":
        raise ConfigError(f"dataset {index.name!r} is a {index.task} dataset, not detection")
    from latentcache.finetune.detection_fewshot import chosen_classes

    classes = chosen_classes(config, index)
    loader, evals, eval_split = _loaders(config, index, classes)
    parent = load_codec(config.codec)
    detector, model_config = _detector(config, classes)
    parent_detector = copy.deepcopy(detector)
    codec = copy.deepcopy(parent.model).to(device)
    tuner = DetectionFinetuner(
        codec, detector.to(device), config.mode, beta=config.beta, lr=config.lr,
        detector_lr=config.detector_lr, aux_lr=config.aux_lr, scales_repr=config.scales_repr,
        original=config.input == "original",
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "finetune.json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    train_bpp = _train(config, tuner, loader, out, device)
    return _finish(config, parent, codec, (parent_detector, detector), model_config,
                   (index, classes), evals, eval_split, train_bpp)  # fmt: skip


def _finish(config, parent, codec, detectors, model_config, data, evals, split, bpp) -> dict:
    from latentcache.codec.load import load_codec
    from latentcache.finetune.outputs import save_codec
    from latentcache.train.checkpoint import codec_identity, save_checkpoint

    out, lmbda = Path(config.out), _lambda(config, parent)
    index, classes = data
    ids = [index.options["category_ids"][list(index.classes).index(c)] for c in classes]
    run = SimpleNamespace(mode=config.mode, beta=config.beta, gamma=0.0, epochs=config.epochs)
    path = save_codec(SimpleNamespace(config=run, model=codec, parent=parent, lmbda=lmbda), out)
    new = load_codec(replace(parent.spec, source="checkpoint", checkpoint=str(path)))
    old_detector, detector = detectors
    save_checkpoint(out / DETECTOR_NAME, {
        "model": {k: v.detach().cpu() for k, v in detector.state_dict().items()},
        "epoch": config.epochs,
        "config": model_config, "classes": list(classes),
        "category_ids": ids, "inputs": ["image"],
        "codec": codec_identity(new.identity()), "finetune": config.to_dict(),
        "initialised_from": getattr(detector, "initialised_from", None),
    })  # fmt: skip
    summary = {
        "task": "detection", "mode": config.mode, "beta": config.beta, "lambda": lmbda,
        "epochs": config.epochs, "codec_checkpoint": str(path), "split": split,
        "parent_codec": parent.identity(), "codec": new.identity(), "train_bpp_likelihood": bpp,
    }  # fmt: skip
    if evals is not None:
        device = next(detector.parameters()).device
        original = config.input == "original"
        summary["input"] = config.input
        # a new detector trained in task mode (a baseline) has no "before" worth measuring
        new_baseline = config.detector is None and config.mode == "task"
        summary["frozen"] = (
            None
            if new_baseline
            else measure_detection_from_bytes(
                None if original else parent.model,
                old_detector,
                classes,
                evals,
                device,
                config.novel,
            )
        )
        summary["finetuned"] = measure_detection_from_bytes(
            None if original else new.model, detector, classes, evals, device, config.novel
        )
    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def format_detection_summary(summary: dict) -> str:
    """Frozen codec + detector against fine-tuned: mAP, AP50, true bpp from the bytes."""
    lines = [f"{summary['mode']} detection fine-tuning, split {summary.get('split')}:"]
    lines.append(f"  {'':<12} {'codec sha256':<14} {'mAP':>7} {'AP50':>7} {'true bpp':>9}")
    for name, key, codec in (("frozen", "frozen", summary["parent_codec"]),
                             ("fine-tuned", "finetuned", summary["codec"])):  # fmt: skip
        m = summary.get(key) or {}

        def cell(k, fmt, m=m):
            return format(m[k], fmt) if m.get(k) is not None else "-"

        lines.append(
            f"  {name:<12} {codec['weights_sha256'][:12]:<14} {cell('map', '7.4f')} "
            f"{cell('map_50', '7.4f')} {cell('bpp_true_mean', '9.4f')}"
        )
    return "\n".join(lines)

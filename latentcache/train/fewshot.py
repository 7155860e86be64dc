"""Few-shot detection, the TFA protocol (Wang et al. 2020, "Frustratingly simple few-shot
object detection"), as codevilla2021 section 3.4 runs it on VOC, in task-generic pieces::

    base training    the detector on the base classes only: subset_targets drops the boxes
                     of the other classes and renumbers the kept ones (0..len(base)-1)
    k-shot sample    sample_kshot: per class, a seeded draw of images holding it until
                     exactly k of its objects are taken (an image that would overshoot is
                     skipped); an image keeps only the boxes of the classes it was drawn for
    fine-tuning      expand_box_predictor: the box classifier and regressor for all classes,
                     base rows copied from the base detector, novel rows new (TFA randinit);
                     freeze_but_box_predictor: every other parameter frozen, BatchNorm
                     statistics too
    metric           class_ap50 (per-class AP at IoU 0.5, torchmetrics) and novel_ap50: the
                     mean over the novel classes (nAP50)

TFA's VOC split 1 (:data:`VOC_NOVEL_SPLITS`): novel = bird, bus, cow, motorbike, sofa.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from latentcache.errors import ConfigError

__all__ = [
    "VOC_NOVEL_SPLITS",
    "SHOTS",
    "sample_kshot",
    "subset_targets",
    "box_predictor_of",
    "freeze_but_box_predictor",
    "expand_box_predictor",
    "class_ap50",
    "novel_ap50",
]

SHOTS = (1, 2, 3, 5, 10)
VOC_NOVEL_SPLITS = {
    1: ("bird", "bus", "cow", "motorbike", "sofa"),
    2: ("aeroplane", "bottle", "cow", "horse", "sofa"),
    3: ("boat", "cat", "motorbike", "sheep", "sofa"),
}


def sample_kshot(
    labels: Mapping[str, Sequence[int]], classes: Sequence[int], k: int, seed: int
) -> dict[str, list[int]]:
    """``{image key: [classes whose boxes it keeps]}``: k objects of every class in ``classes``.

    ``labels``: every candidate image's box labels (leave out boxes evaluation ignores, such
    as VOC's difficult ones). Per class, in a seeded order of the images holding it, an image
    is taken when its objects of that class fit in what is left of k. A class with fewer than
    k objects in all is a ConfigError.
    """
    if k < 1:
        raise ConfigError(f"k={k}: should be >= 1")
    keys = sorted(labels)
    chosen: dict[str, list[int]] = {}
    for c in classes:
        holders = [key for key in keys if c in labels[key]]
        rng = np.random.default_rng([seed, k, int(c)])
        taken = 0
        for i in rng.permutation(len(holders)):
            n = sum(1 for lab in labels[holders[i]] if lab == c)
            if taken + n <= k:
                chosen.setdefault(holders[i], []).append(int(c))
                taken += n
            if taken == k:
                break
        if taken < k:
            raise ConfigError(f"class {c}: only {taken} objects can make {k} shots")
    return {key: sorted(v) for key, v in sorted(chosen.items())}


def subset_targets(target: dict, keep: Sequence[int], renumber: bool = True) -> dict:
    """``target`` with only the boxes of ``keep`` (labels renumbered 0..len(keep)-1 in the
    order of ``keep`` when ``renumber``); the other keys as they are."""
    labels = target["labels"]
    lookup = torch.full((int(max([*keep, int(labels.max()) if labels.numel() else 0])) + 1,), -1)
    lookup[torch.as_tensor(list(keep), dtype=torch.long)] = torch.arange(len(keep))
    mask = lookup[labels.long()] >= 0 if labels.numel() else labels.bool()
    out = dict(target)
    for name in ("boxes", "labels", "iscrowd"):
        if name in target:
            out[name] = target[name][mask]
    if renumber:
        out["labels"] = lookup[out["labels"].long()].to(labels.dtype)
    return out


def box_predictor_of(model: nn.Module) -> tuple[nn.Module, str]:
    """The torchvision ``roi_heads.box_predictor`` inside a detector, and its qualified name."""
    for name, module in model.named_modules():
        if name == "roi_heads.box_predictor" or name.endswith(".roi_heads.box_predictor"):
            return module, name
    raise ConfigError(f"{type(model).__name__} has no roi_heads.box_predictor (not a Faster R-CNN)")


def _stay_eval(module: nn.Module, _args) -> None:
    module.training = False


def freeze_but_box_predictor(model: nn.Module) -> list[nn.Parameter]:
    """Freeze every parameter but the box classifier's and regressor's, and every BatchNorm's
    running statistics (they normalise as in evaluation, even in training mode); return the
    box predictor's parameters."""
    predictor, _ = box_predictor_of(model)
    keep = {id(p) for p in predictor.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(_stay_eval)
    return list(predictor.parameters())


def expand_box_predictor(model: nn.Module, base_to_all: Sequence[int], num_all: int) -> None:
    """Replace the box predictor of a detector of ``len(base_to_all)`` classes by one of
    ``num_all`` (plus background): background and base rows copied (base class i becomes
    ``base_to_all[i]``), novel rows freshly initialised (normal, std 0.01 / 0.001; bias 0)."""
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    old, name = box_predictor_of(model)
    if old.cls_score.out_features != len(base_to_all) + 1:
        raise ConfigError(
            f"the box predictor has {old.cls_score.out_features - 1} classes, not "
            f"{len(base_to_all)} base classes"
        )
    new = FastRCNNPredictor(old.cls_score.in_features, num_all + 1)
    nn.init.normal_(new.cls_score.weight, std=0.01)
    nn.init.normal_(new.bbox_pred.weight, std=0.001)
    nn.init.zeros_(new.cls_score.bias)
    nn.init.zeros_(new.bbox_pred.bias)
    rows = [0] + [int(c) + 1 for c in base_to_all]  # 0: background
    with torch.no_grad():
        for src, dst in enumerate(rows):
            new.cls_score.weight[dst] = old.cls_score.weight[src]
            new.cls_score.bias[dst] = old.cls_score.bias[src]
            new.bbox_pred.weight[4 * dst : 4 * dst + 4] = old.bbox_pred.weight[
                4 * src : 4 * src + 4
            ]
            new.bbox_pred.bias[4 * dst : 4 * dst + 4] = old.bbox_pred.bias[4 * src : 4 * src + 4]
    parent = model.get_submodule(name.rsplit(".", 1)[0])
    parent.box_predictor = new.to(old.cls_score.weight.device)
    if hasattr(model, "roi_heads") and hasattr(model, "num_classes"):
        model.num_classes = num_all


def class_ap50(
    predictions: Sequence[dict], targets: Sequence[dict], classes: Sequence[str]
) -> dict[str, float | None]:
    """Per-class AP at IoU 0.5 (COCO's 101-point interpolation, torchmetrics); None for a
    class without a ground-truth box. Crowd / difficult boxes (``iscrowd``) are ignored."""
    from torchmetrics.detection import MeanAveragePrecision

    from latentcache.train.detection_metric import _prediction, _target

    metric = MeanAveragePrecision(
        box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5], class_metrics=True,
        backend="faster_coco_eval",
    )  # fmt: skip
    metric.update([_prediction(p) for p in predictions], [_target(t) for t in targets])
    result = metric.compute()
    out: dict[str, float | None] = dict.fromkeys(classes)
    observed = result["classes"].reshape(-1).tolist()
    for c, ap in zip(observed, result["map_per_class"].reshape(-1).tolist(), strict=True):
        if 0 <= int(c) < len(classes):
            out[classes[int(c)]] = None if ap < 0 else float(ap)
    return out


def novel_ap50(per_class_ap50: Mapping[str, float | None], novel: Sequence[str]) -> float:
    """nAP50: the mean AP50 of the novel classes (each must have been evaluated)."""
    missing = [c for c in novel if per_class_ap50.get(c) is None]
    if missing:
        raise ConfigError(f"no AP50 for novel classes {missing}: no ground truth in the split")
    return float(np.mean([per_class_ap50[c] for c in novel]))

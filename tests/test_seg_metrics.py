"""mIoU from torchmetrics agrees with a direct confusion-matrix computation."""

from __future__ import annotations

import numpy as np
import torch


def _one_hot_logits(pred: np.ndarray, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(pred).long(), k).permute(0, 3, 1, 2).float()


def test_miou_matches_a_hand_computed_confusion_matrix():
    from latentcache.tasks.seg_metric import SegmentationMeter

    k = 4  # class 3 appears in neither prediction nor ground truth
    target = np.array([[[0, 0, 1, 1], [0, 2, 2, 255]], [[1, 1, 1, 0], [255, 255, 2, 2]]], np.uint8)
    pred = np.array([[[0, 1, 1, 1], [0, 2, 0, 2]], [[1, 1, 2, 0], [0, 1, 2, 2]]], np.uint8)
    meter = SegmentationMeter(k)
    for b in range(2):  # two batches: the matrix accumulates over the split
        meter.update(_one_hot_logits(pred[b : b + 1], k), torch.from_numpy(target[b : b + 1]))
    cm = np.zeros((k, k), np.int64)
    for t, p in zip(target.ravel(), pred.ravel(), strict=True):
        if t != 255:
            cm[t, p] += 1
    iou = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm)).clip(min=1)
    present = (cm.sum(0) + cm.sum(1)) > 0
    s = meter.summary(["bg", "a", "b", "never"])
    assert s["confusion"] == cm.tolist()
    assert np.isclose(s["miou"], iou[present].mean())
    assert s["per_class_iou"]["never"] is None
    assert np.isclose(s["per_class_iou"]["a"], 4 / 6)  # tp 4, fn 1, fp 1 (hand count)
    assert np.isclose(s["pixel_accuracy"], np.trace(cm) / cm.sum())
    assert s["pixels"] == int((target != 255).sum()) == 13


def test_low_resolution_logits_are_upsampled_to_the_target():
    from latentcache.tasks.seg_metric import SegmentationMeter

    meter = SegmentationMeter(2)
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0, :, 0] = 5.0  # left half: class 0
    logits[0, 1, :, 1] = 5.0  # right half: class 1
    target = torch.zeros(1, 32, 32, dtype=torch.uint8)
    target[0, :, 16:] = 1
    meter.update(logits, target)
    assert meter.summary()["miou"] == 1.0

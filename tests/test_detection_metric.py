"""mAP on a hand-made case equals pycocotools' COCOeval run directly on the same boxes."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from latentcache.train.detection_metric import DetectionMeter

# three images, two classes; xyxy pixels. Image 2 has a crowd box, image 3 no ground truth.
GT = {
    1: [([10, 10, 50, 60], 0, 0), ([60, 20, 100, 80], 1, 0), ([5, 70, 30, 95], 0, 0)],
    2: [([20, 20, 80, 70], 1, 0), ([0, 0, 40, 40], 0, 1)],
    3: [],
}
PRED = {
    1: [
        ([12, 11, 49, 62], 0.95, 0),  # IoU ~ 0.88
        ([62, 25, 100, 82], 0.80, 1),  # IoU ~ 0.85
        ([5, 70, 25, 90], 0.40, 0),  # IoU ~ 0.64
        ([200, 200, 220, 230], 0.70, 0),  # nothing there
    ],
    2: [
        ([22, 18, 85, 72], 0.9, 1),
        ([2, 2, 38, 38], 0.85, 0),  # on the crowd box: ignored, not a false positive
        ([20, 20, 80, 70], 0.30, 0),  # right place, wrong class
    ],
    3: [([10, 10, 30, 30], 0.6, 1)],
}


def _tensors():
    preds, targets = [], []
    for image_id in GT:
        g, p = GT[image_id], PRED[image_id]
        targets.append(
            {
                "boxes": torch.tensor([b for b, _, _ in g], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor([c for _, c, _ in g], dtype=torch.int64),
                "iscrowd": torch.tensor([k for _, _, k in g], dtype=torch.int64),
            }
        )
        preds.append(
            {
                "boxes": torch.tensor([b for b, _, _ in p], dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor([s for _, s, _ in p]),
                "labels": torch.tensor([c for _, _, c in p], dtype=torch.int64),
            }
        )
    return preds, targets


def _xywh(b):
    return [b[0], b[1], b[2] - b[0], b[3] - b[1]]


def _cocoeval():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    anns, n = [], 0
    for image_id, boxes in GT.items():
        for b, c, crowd in boxes:
            n += 1
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {"id": n, "image_id": image_id, "category_id": c, "bbox": _xywh(b),
                 "area": float(w * h), "iscrowd": crowd}
            )  # fmt: skip
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i} for i in GT],
        "annotations": anns,
        "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dets = [
            {"image_id": i, "category_id": c, "bbox": _xywh(b), "score": s}
            for i, p in PRED.items()
            for b, s, c in p
        ]
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"][:, :, :, 0, 2]  # (T, R, K) at area all, 100 detections
    per_class = [float(np.mean(precision[:, :, k][precision[:, :, k] > -1])) for k in (0, 1)]
    return ev.stats, per_class


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_map_equals_pycocotools_cocoeval(backend):
    stats, per_class = _cocoeval()
    meter = DetectionMeter(2, backend=backend)
    preds, targets = _tensors()
    meter.update(preds[:2], targets[:2], loss=torch.tensor(2.0))
    meter.update(preds[2:], targets[2:], loss=torch.tensor(1.0))
    out = meter.summary(["a", "b"])
    assert 0.1 < stats[0] < 0.9  # a case that is neither trivial nor hopeless
    assert out["map"] == pytest.approx(stats[0], abs=1e-6)
    assert out["map_50"] == pytest.approx(stats[1], abs=1e-6)
    assert out["map_75"] == pytest.approx(stats[2], abs=1e-6)
    assert out["per_class_ap"]["a"] == pytest.approx(per_class[0], abs=1e-6)
    assert out["per_class_ap"]["b"] == pytest.approx(per_class[1], abs=1e-6)
    assert out["loss"] == pytest.approx(1.5)


def test_crowd_boxes_are_ignored_and_absent_classes_are_none():
    preds, targets = _tensors()
    with_crowd = DetectionMeter(2)
    with_crowd.update(preds, targets)
    no_flag = DetectionMeter(2)
    no_flag.update(preds, [{k: t[k] for k in ("boxes", "labels")} for t in targets])
    assert with_crowd.summary()["map"] != no_flag.summary()["map"]
    meter = DetectionMeter(3)
    meter.update(preds, targets)
    assert meter.summary(["a", "b", "c"])["per_class_ap"]["c"] is None
    meter.reset()
    meter.update(preds[1:2], targets[1:2])
    fresh = DetectionMeter(3)
    fresh.update(preds[1:2], targets[1:2])
    assert meter.summary()["map"] == fresh.summary()["map"] != with_crowd.summary()["map"]

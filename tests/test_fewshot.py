"""The TFA few-shot pieces: seeded k-shot sampling, base-class targets, the box predictor
grown to all classes and alone trainable, and nAP50 from per-class AP50 (= pycocotools')."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from test_detection_metric import GT, PRED, _tensors, _xywh

from latentcache.datasets.demo_det import manifest_path
from latentcache.datasets.voc_det import VOC_CLASSES
from latentcache.errors import ConfigError
from latentcache.train.fewshot import (
    SHOTS,
    VOC_NOVEL_SPLITS,
    box_predictor_of,
    class_ap50,
    expand_box_predictor,
    freeze_but_box_predictor,
    novel_ap50,
    sample_kshot,
    subset_targets,
)
from latentcache.train.models.detector_registry import create_detector


@pytest.fixture(scope="module")
def labels() -> dict[str, list[int]]:
    """Every demo-det training image's box labels (the committed plan: exact)."""
    plan = json.loads(manifest_path().read_text())
    return {
        i["key"]: [o["cls"] for o in i["objects"]] for i in plan["images"] if i["split"] == "train"
    }


def test_kshot_takes_exactly_k_objects_per_class_and_is_seeded(labels):
    for k in SHOTS:
        chosen = sample_kshot(labels, [0, 1, 2], k, seed=0)
        for c in (0, 1, 2):
            taken = sum(labels[key].count(c) for key, cs in chosen.items() if c in cs)
            assert taken == k, (k, c)
        assert sample_kshot(labels, [0, 1, 2], k, seed=0) == chosen
    assert sample_kshot(labels, [0, 1, 2], 5, seed=1) != sample_kshot(labels, [0, 1, 2], 5, 0)
    with pytest.raises(ConfigError, match="only .* objects can make 1000 shots"):
        sample_kshot(labels, [0], 1000, seed=0)


def test_subset_targets_keeps_and_renumbers_the_chosen_classes():
    t = {
        "boxes": torch.arange(16, dtype=torch.float32).reshape(4, 4),
        "labels": torch.tensor([0, 2, 1, 2]),
        "iscrowd": torch.tensor([0, 1, 0, 0]),
        "image_size": (50, 60),
    }
    out = subset_targets(t, [2, 0])
    assert out["labels"].tolist() == [1, 0, 0] and out["iscrowd"].tolist() == [0, 1, 0]
    assert out["boxes"][:, 0].tolist() == [0.0, 4.0, 12.0] and out["image_size"] == (50, 60)
    assert subset_targets(t, [1], renumber=False)["labels"].tolist() == [1]
    empty = subset_targets({**t, "labels": torch.zeros(0, dtype=torch.int64),
                            "boxes": torch.zeros(0, 4), "iscrowd": torch.zeros(0)}, [1])  # fmt: skip
    assert empty["boxes"].shape == (0, 4)


def _targets(n: int) -> list[dict]:
    return [
        {"image_size": (120, 184), "canvas_offset": (4, 4),
         "boxes": torch.tensor([[10.0, 12.0, 70.0, 60.0], [90.0, 30.0, 150.0, 100.0]]),
         "labels": torch.tensor([0, 2])}
        for _ in range(n)
    ]  # fmt: skip


def test_base_detector_grows_to_all_classes_and_only_its_box_predictor_trains():
    torch.manual_seed(0)
    base = [0, 2]  # base classes' places among all three
    model = create_detector("fasterrcnn-cresnet39", 8, len(base), base_width=4, fpn_channels=16)
    old, name = box_predictor_of(model)
    assert name == "roi_heads.box_predictor" and old.cls_score.out_features == 3
    old_w = old.cls_score.weight.detach().clone()
    expand_box_predictor(model, base, 3)
    new, _ = box_predictor_of(model)
    assert new.cls_score.out_features == 4 and new.bbox_pred.out_features == 16
    torch.testing.assert_close(new.cls_score.weight[[0, 1, 3]], old_w)  # background, 0 -> 0, 1 -> 2
    trainable = freeze_but_box_predictor(model)
    assert {id(p) for p in trainable} == {id(p) for p in new.parameters()}
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    opt = torch.optim.SGD(trainable, lr=0.1)
    model.train()
    loss = sum(model(torch.randn(2, 8, 8, 12), targets=_targets(2)).values())
    loss.backward()
    opt.step()
    changed = {n for n, p in model.state_dict().items() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith("roi_heads.box_predictor.") for n in changed)
    with pytest.raises(ConfigError, match="not 5 base classes"):
        expand_box_predictor(model, list(range(5)), 6)


def test_pixel_detector_box_predictor_is_found():
    model = create_detector("fasterrcnn-resnet50-fpn", 3, 15, pretrained=False, min_size=64)
    _, name = box_predictor_of(model)
    assert name == "model.roi_heads.box_predictor"
    expand_box_predictor(model, list(range(15)), 20)
    assert box_predictor_of(model)[0].cls_score.out_features == 21
    with pytest.raises(ConfigError, match="no roi_heads.box_predictor"):
        box_predictor_of(torch.nn.Linear(2, 2))


def _pycocotools_ap50() -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    anns = [
        {"id": n, "image_id": i, "category_id": c, "bbox": _xywh(b),
         "area": float((b[2] - b[0]) * (b[3] - b[1])), "iscrowd": k}
        for n, (i, (b, c, k)) in enumerate(((i, g) for i, gs in GT.items() for g in gs), 1)
    ]  # fmt: skip
    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in GT], "annotations": anns,
                  "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dets = [{"image_id": i, "category_id": c, "bbox": _xywh(b), "score": s}
                for i, p in PRED.items() for b, s, c in p]  # fmt: skip
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, :, 0, 2]  # IoU 0.5, (R, K), area all, 100 dets
    return [float(np.mean(precision[:, k][precision[:, k] > -1])) for k in (0, 1)]


def test_ap50_per_class_equals_pycocotools_and_nap50_is_the_novel_mean():
    preds, targets = _tensors()
    per_class = class_ap50(preds, targets, ["a", "b", "c"])
    want = _pycocotools_ap50()
    assert per_class["a"] == pytest.approx(want[0]) and per_class["b"] == pytest.approx(want[1])
    assert per_class["c"] is None and 0 < want[0] < 1
    assert novel_ap50(per_class, ["a", "b"]) == pytest.approx(np.mean(want))
    with pytest.raises(ConfigError, match=r"novel classes \['c'\]"):
        novel_ap50(per_class, ["b", "c"])


def test_tfa_split_1_names_voc_classes():
    assert VOC_NOVEL_SPLITS[1] == ("bird", "bus", "cow", "motorbike", "sofa")
    assert all(set(s) <= set(VOC_CLASSES) for s in VOC_NOVEL_SPLITS.values())
    base = [c for c in VOC_CLASSES if c not in VOC_NOVEL_SPLITS[1]]
    assert len(base) == 15

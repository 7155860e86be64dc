"""The detection report: boxes drawn on real photos, the picture sheet of an evaluation
through a real latent detector, and the rate–mAP plot beside codevilla2021's points."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from detection_fixtures import CATEGORIES, photos, write_coco_tree
from PIL import Image

from latentcache.report.detection import (
    MIN_SCORE,
    BoxRow,
    box_sheet,
    class_colour,
    draw_boxes,
    eval_rows,
)

torch.set_num_threads(1)
CLASSES = tuple(c["name"] for c in sorted(CATEGORIES, key=lambda c: c["id"]))


def test_boxes_are_drawn_where_they_are_and_nowhere_else():
    rgb = photos()[0]  # 173 x 221, astronaut
    boxes = np.array([[10.0, 20.0, 60.0, 100.0], [100.0, 30.0, 140.0, 70.0]])
    colours = [class_colour(0), class_colour(2)]
    out = draw_boxes(rgb, boxes, None, colours, width=2)
    assert out.shape == rgb.shape and out is not rgb
    for (x0, y0, x1, y1), c in zip(boxes.astype(int), colours, strict=True):
        edges = [out[y0, x0 + 5], out[y1, x1 - 5], out[y0 + 5, x0], out[(y0 + y1) // 2, x1]]
        assert all(tuple(p) == c for p in edges), (edges, c)
        inside = slice(y0 + 3, y1 - 2), slice(x0 + 3, x1 - 2)
        np.testing.assert_array_equal(out[inside], rgb[inside])  # no fill
    changed = np.any(out != rgb, axis=-1)
    assert not changed[110:, :].any() and not changed[:, 150:].any()
    assert class_colour(0) != class_colour(1) != class_colour(2)
    np.testing.assert_array_equal(draw_boxes(rgb, np.zeros((0, 4)), None, []), rgb)


def _row(key: str, rgb: np.ndarray, bpp=None) -> BoxRow:
    h, w = rgb.shape[:2]
    truth = np.array([[10.0, 20.0, 60.0, 100.0], [0.5 * w, 10.0, w - 5.0, h / 2]])
    detections = np.vstack([truth + 4.0, [[5.0, 5.0, 30.0, 30.0]]])
    return BoxRow(
        key,
        rgb,
        None,
        truth,
        np.array([1, 2]),
        detections,
        np.array([1, 0, 2]),
        np.array([0.9, 0.5, MIN_SCORE / 2]),  # the last is below the threshold: not drawn
        (h, w),
        bpp,
    )


def test_sheet_of_real_photos_shows_truth_and_detections(tmp_path):
    rows = [_row(f"im{i}", rgb, bpp=0.4 if i else None) for i, rgb in enumerate(photos())]
    rows[2] = BoxRow(**{**rows[2].__dict__, "image": None})  # no picture at hand: grey
    assert list(rows[0].shown()) == [0, 1]
    path = box_sheet(rows, CLASSES, tmp_path / "sheet.png", title="coco val")
    with Image.open(path) as im:
        w, h = im.size
        pixels = {tuple(p) for p in np.asarray(im.convert("RGB")).reshape(-1, 3)}
    assert h > 3 * 200 and w > h / 3
    for label in (0, 1, 2):  # every class drawn (truth or detection) keeps its colour
        assert class_colour(label) in pixels
    with pytest.raises(ValueError, match="2 labels"):
        BoxRow("k", None, None, np.zeros((3, 4)), np.zeros(2), np.zeros((0, 4)), np.zeros(0),
               np.zeros(0), (10, 10))  # fmt: skip
    with pytest.raises(ValueError, match="at least one"):
        box_sheet([], CLASSES, tmp_path / "x.png")


def test_eval_rows_take_the_detectors_output_and_the_targets():
    batch = {"key": ["a", "b"]}
    detections = [
        {"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "labels": torch.tensor([2]),
         "scores": torch.tensor([0.7])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long),
         "scores": torch.zeros(0)},
    ]  # fmt: skip
    targets = [
        {"boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0]]), "labels": torch.tensor([1]),
         "image_size": (20, 30), "canvas_offset": (3, 5)},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long),
         "image_size": (17, 9), "canvas_offset": (0, 0)},
    ]  # fmt: skip
    a, b = eval_rows(batch, detections, targets)
    assert a.key == "a" and a.hw == (20, 30) and b.hw == (17, 9)
    np.testing.assert_array_equal(a.boxes, [[1, 2, 3, 4]])
    assert (
        list(a.labels) == [2] and list(a.truth_labels) == [1] and a.scores[0] == pytest.approx(0.7)
    )
    assert b.boxes.shape == (0, 4) and b.truth_boxes.shape == (0, 4)


def test_pictures_of_an_evaluation_through_a_real_latent_detector(tmp_path, tiny_codec):
    """The eval pass on a real detection store: the store's loader, the transform, the
    detector called through the task's forward (with its targets), the boxes on the
    originals found through the dataset index."""
    from contextlib import nullcontext

    from latentcache.config import EncodeConfig
    from latentcache.datasets import build_index
    from latentcache.pipeline.encode import run_encode
    from latentcache.report.pictures import eval_pictures
    from latentcache.store import open_store
    from latentcache.tasks import get_task
    from latentcache.train.augment import AugmentConfig, LatentStats, LatentTransform
    from latentcache.train.data import StreamSpec
    from latentcache.train.epoch import make_prepare
    from latentcache.train.models.detector_registry import create_detector

    root = write_coco_tree(tmp_path / "data")
    index = build_index("coco", root)
    config = EncodeConfig(dataset="coco", data_root=str(root), out=str(tmp_path / "s"), workers=0)
    run_encode(config, tiny_codec, index=index)
    store = open_store(tmp_path / "s")
    task = store.task_unit
    torch.manual_seed(0)
    heads = {"rpn_pre_nms_top_n_test": 64, "rpn_post_nms_top_n_test": 32, "box_score_thresh": 0.0}
    model = create_detector(
        "fasterrcnn-cresnet51", store.num_channels, len(store.classes), base_width=4,
        fpn_channels=16, **heads,
    )  # fmt: skip
    transform = LatentTransform(
        model.inputs, LatentStats(), AugmentConfig(resize=None, crop=None, flip=False),
        store_inputs=store.inputs,
    )  # fmt: skip
    prepare = make_prepare(transform, torch.device("cpu"), False, task)
    spec = StreamSpec(store=str(tmp_path / "s"), split="train", fields=transform.fields)
    classes = list(store.classes)
    path = eval_pictures(task, store, spec, None, prepare, model, nullcontext, classes, tmp_path, 4)
    assert path == tmp_path / "pictures_train.png"
    with Image.open(path) as im:
        pixels = {tuple(p) for p in np.asarray(im.convert("RGB")).reshape(-1, 3)}
        assert im.size[1] > 2 * 200  # both train images
    truth_labels = {classes.index(c["name"]) for c in CATEGORIES if c["id"] in (1, 3, 7)}
    assert all(class_colour(v) in pixels for v in truth_labels)  # the train boxes' classes
    assert get_task("classification").report_section().pictures is None  # draws nothing


def _det_row(model: str, inp: str, bpp, m: float, m50: float, quality=None) -> dict:
    return {
        "recipe": "det", "dataset": "voc-det", "model": model, "arch": model, "input": inp,
        "quality": quality, "metric": "mse" if bpp else None, "seed": 0,
        "split": "test", "task": "detection", "map": m, "map_50": m50, "count": 10, "bpp": bpp,
        "train_seconds": 1.0, "epochs": 1, "eval_ms_per_image": 1.0,
    }  # fmt: skip


CODEVILLA_DET = [  # codevilla2021 Table 1, detection rows (mAP, AP50 in percent)
    ("RGB from 4-5 bpp JPEGs", "original", None, 53.1, 80.8),
    ("RGB from 1 bpp JPEGs", "decoded", 1.0, 52.3, 79.8),
    ("RGB from .4 bpp JPEGs", "decoded", 0.4, 51.4, 78.1),
    ("Our Compression - Naively Learned (bpp ~ 1.0)", "latents", 1.0, 52.8, 80.3),
    ("Our Compression - Naively Learned (bpp ~ 0.4)", "latents", 0.4, 52.1, 79.6),
]


def test_detection_report_plots_map_and_ap50_beside_codevilla2021(tmp_path):
    from latentcache.report.rate_accuracy import build_report

    run = tmp_path / "run"
    papers = [
        {"source": "codevilla2021 Table 1", "label": label, "model": "fasterrcnn", "input": inp,
         "bpp": bpp, "map": m, "map_50": m50}
        for label, inp, bpp, m, m50 in CODEVILLA_DET
    ]  # fmt: skip
    papers.append(
        {"source": "chamain2021 Fig. 3", "label": "J-FT over T-FT", "model": "fasterrcnn",
         "input": "decoded", "bpp": 0.1, "statement": "J-FT gains 4.5 points over T-FT"}
    )  # fmt: skip
    (run / "stages").mkdir(parents=True)
    (run / "recipe.json").write_text(json.dumps({"name": "det", "dataset": "voc-det", "papers": papers}))  # fmt: skip
    rows = [
        _det_row("fasterrcnn", "latents", 0.41, 0.30, 0.55, quality=2),
        _det_row("fasterrcnn", "latents", 0.98, 0.33, 0.58, quality=5),
        _det_row("fasterrcnn", "original", None, 0.36, 0.62),
    ]
    for i, r in enumerate(rows):
        (run / "stages" / f"eval-{i}").mkdir()
        (run / "stages" / f"eval-{i}" / "result.json").write_text(json.dumps(r))
    rgb = photos()[1]
    box_sheet([_row("im", rgb, 0.4)], CLASSES, run / "stages" / "eval-1" / "pictures_test.png")
    out = build_report([run], tmp_path / "report")
    md = (out / "report.md").read_text()
    assert "![mAP and AP50 against mean true bpp](map_vs_bpp.png)" in md
    assert (out / "map_vs_bpp.png").stat().st_size > 20_000
    assert not (out / "accuracy_vs_bpp.png").exists() and not (out / "miou_vs_bpp.png").exists()
    assert "| mAP % | AP50 % |" in md and "| 33.0 | 58.0 |" in md
    assert "| paper mAP % | paper AP50 % | ours mAP % | ours AP50 %" in md
    assert "| 52.8 | 80.3 | 33.0 | 58.0 |" in md  # ~1 bpp beside our line nearest 1 bpp
    assert "| 52.1 | 79.6 | 30.0 | 55.0 |" in md  # ~0.4 bpp
    assert "| 53.1 | 80.8 | 36.0 | 62.0 |" in md  # originals
    assert "## Detection: pictures from the latents" in md and "q5 mse](pictures/eval-1.png)" in md
    assert "- chamain2021 Fig. 3, J-FT over T-FT (0.1 bpp): J-FT gains 4.5 points over T-FT" in md

"""chamain2021 on a detector: each fine-tuning mode changes exactly the parameters it should
(state dicts compared before and after one step), on real photos with their boxes."""

from __future__ import annotations

import copy

import pytest
import torch
from detection_fixtures import write_coco_tree

from latentcache.datasets import build_index
from latentcache.errors import ConfigError
from latentcache.finetune.detection import (
    DetectionFinetuner,
    DetectionImages,
    canvas_offset,
    decoded_images,
    detection_loader,
)
from latentcache.train.models.detector_registry import create_detector

HEADS = {"rpn_pre_nms_top_n_train": 64, "rpn_post_nms_top_n_train": 32,
         "box_batch_size_per_image": 16}  # fmt: skip
DETECTORS = {
    "pixels": ("fasterrcnn-resnet50-fpn", {"pretrained": False, "min_size": 96, "max_size": 128}),
    "latents": ("fasterrcnn-cresnet39", {"base_width": 4, "fpn_channels": 16}),
}
CODEC_PARTS = ("g_a", "h_a", "h_s", "entropy_bottleneck")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    index = build_index("coco", write_coco_tree(tmp_path_factory.mktemp("coco")))
    images = DetectionImages(index.root, index.split("train"), index.options["category_ids"])
    return next(iter(detection_loader(images, batch_size=1, shuffle=False)))


def _detector(kind: str, channels: int):
    name, kwargs = DETECTORS[kind]
    torch.manual_seed(0)
    return create_detector(name, 3 if kind == "pixels" else channels, 3, **kwargs, **HEADS)


def _changed(before: dict, module: torch.nn.Module) -> set[str]:
    after = module.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def _assert_moved_by_gradients(module: torch.nn.Module, changed: set[str], aux=()) -> None:
    """Exactly the parameters with a gradient moved (Adam's first step is about lr * sign);
    zero gradients (zero-initialised residual branches) leave theirs in place."""
    params = dict(module.named_parameters())
    grads = {
        n: float(p.grad.abs().max())
        for n, p in params.items()
        if p.grad is not None and n not in aux
    }
    moved = (changed & set(params)) - set(aux)
    assert (
        {n for n, g in grads.items() if g > 1e-6} <= moved <= {n for n, g in grads.items() if g > 0}
    )


def test_loader_gives_padded_images_with_boxes_on_their_canvas(batch):
    x, t = batch["x"], batch["targets"][0]
    assert x.shape[-2] % 64 == 0 and x.shape[-1] % 64 == 0
    h, w = t["image_size"]
    top, left = t["canvas_offset"]
    assert (top, left) == canvas_offset(h, w) and (x.shape[-2] - h) // 2 == top
    assert x[0, :, top : top + h, left : left + w].std() > 0.05  # the photo
    assert float(x[0, :, :top].abs().sum() + x[0, :, :, :left].abs().sum()) == 0.0  # padding
    assert len(t["boxes"]) == len(t["labels"]) >= 1
    cut = decoded_images(x, batch["targets"])[0]
    assert cut.shape == (3, h, w)


@pytest.mark.parametrize("kind", sorted(DETECTORS))
@pytest.mark.parametrize("mode", ["task", "codec", "joint"])
def test_each_mode_changes_exactly_its_parameters(batch, tiny_model, one_torch_thread, kind, mode):
    codec = copy.deepcopy(tiny_model)
    detector = _detector(kind, codec.M)
    frozen_own = {n for n, p in detector.named_parameters() if not p.requires_grad}
    codec_before = {k: v.clone() for k, v in codec.state_dict().items()}
    det_before = {k: v.clone() for k, v in detector.state_dict().items()}
    tuner = DetectionFinetuner(codec, detector, mode, beta=0.5, lr=1e-3)
    record = tuner.step(batch["x"], batch["targets"])
    assert all(torch.isfinite(torch.tensor(v)) for v in record.values())
    codec_changed, det_changed = _changed(codec_before, codec), _changed(det_before, detector)
    det_params = {n for n, _ in detector.named_parameters()}

    if mode == "codec":
        assert det_changed == set()  # weights and BatchNorm statistics
        assert all(p.grad is None for p in detector.parameters())
    else:
        trained = det_changed & det_params
        assert trained and not trained & frozen_own
        assert any("roi_heads.box_predictor" in k for k in trained)
        _assert_moved_by_gradients(detector, det_changed)
    if mode == "task":
        assert codec_changed == set()
        assert all(p.grad is None for p in codec.parameters())
        assert "aux" not in record
    else:
        parts = CODEC_PARTS + (("g_s",) if kind == "pixels" else ())
        assert {k.split(".")[0] for k in codec_changed} == set(parts)
        _assert_moved_by_gradients(codec, codec_changed, aux=["entropy_bottleneck.quantiles"])
        assert "entropy_bottleneck.quantiles" in codec_changed  # the aux step
        assert record["aux"] >= 0


def test_unknown_mode_is_refused(tiny_model):
    with pytest.raises(ConfigError, match="Invalid mode"):
        DetectionFinetuner(copy.deepcopy(tiny_model), _detector("latents", 24), "both")

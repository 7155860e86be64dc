"""Detectors: every registered one trains (finite losses, a gradient for every trainable
parameter) and predicts boxes in its images' pixels; the latent transform leaves latents
alone and works on the codec's canvas; anchors sit at pixel strides."""

from __future__ import annotations

import pytest
import torch

from latentcache.train.models.detector_registry import (
    DETECTORS,
    create_detector,
    list_detectors,
)
from latentcache.train.models.rcnn_latent import (
    LatentAnchorGenerator,
    LatentRCNNTransform,
    batch_latents,
)

TINY = {
    "fasterrcnn-cresnet39": {"base_width": 4, "fpn_channels": 16},
    "fasterrcnn-cresnet51": {"base_width": 4, "fpn_channels": 16},
    "fasterrcnn-cresnet72": {"base_width": 4, "fpn_channels": 16},
    "fasterrcnn-sresnet": {"pretrained": False, "fpn_channels": 16},
    "fasterrcnn-sresnet101": {"pretrained": False, "fpn_channels": 16},
    "fasterrcnn-resnet50-fpn": {"pretrained": False, "min_size": 64, "max_size": 96},
}
SMALL_HEADS = {
    "rpn_pre_nms_top_n_train": 64,
    "rpn_post_nms_top_n_train": 32,
    "rpn_pre_nms_top_n_test": 64,
    "rpn_post_nms_top_n_test": 32,
    "box_batch_size_per_image": 16,
    "box_score_thresh": 0.0,
}
NUM_CLASSES = 3


def _targets():
    """Two images of different sizes on their padded canvases (latents 5x6 and 4x5)."""
    return [
        {
            "image_size": (70, 90),
            "canvas_offset": (5, 3),
            "boxes": torch.tensor([[10.0, 12.0, 40.0, 50.0], [50.0, 5.0, 88.0, 30.0]]),
            "labels": torch.tensor([0, 2]),
        },
        {
            "image_size": (60, 75),
            "canvas_offset": (2, 2),
            "boxes": torch.tensor([[5.0, 5.0, 60.0, 55.0]]),
            "labels": torch.tensor([1]),
        },
    ]


def _inputs(name: str):
    g = torch.Generator().manual_seed(0)
    if not DETECTORS[name].latent:
        images = torch.rand(2, 3, 70, 90, generator=g)
        return (images,), 3
    latents = [torch.randn(16, 5, 6, generator=g), torch.randn(16, 4, 5, generator=g)]
    return (latents,), 16


def test_registry_lists_the_detectors():
    assert set(TINY) == set(list_detectors())
    with pytest.raises(KeyError, match="Available"):
        create_detector("nope", 8, 3)


SLOW = {"fasterrcnn-sresnet101"}  # fasterrcnn-sresnet's code with a deeper trunk


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(TINY)]
)
def test_detector_trains_and_predicts_in_image_pixels(name, one_torch_thread):
    torch.manual_seed(0)
    xs, channels = _inputs(name)
    model = create_detector(name, channels, NUM_CLASSES, **TINY[name], **SMALL_HEADS)
    assert model.initialised_from["kind"] == "random"
    model.train()
    losses = model(*xs, targets=_targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient for {pname}"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
    model.eval()
    with torch.no_grad():
        out = model(
            *xs, targets=[{k: t[k] for k in ("image_size", "canvas_offset")} for t in _targets()]
        )
    assert len(out) == 2
    assert sum(len(o["boxes"]) for o in out) > 0
    for o, t in zip(out, _targets(), strict=True):
        h, w = t["image_size"]
        b = o["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert ((o["labels"] >= 0) & (o["labels"] < NUM_CLASSES)).all()
        assert o["scores"].shape == o["labels"].shape


def test_latent_transform_keeps_latents_and_moves_boxes_onto_the_canvas():
    latents = [torch.randn(8, 5, 6), torch.randn(8, 4, 5)]
    x = batch_latents(latents)
    assert x.shape == (2, 8, 5, 6)
    assert torch.equal(x[1, :, :4, :5], latents[1]) and not x[1, :, 4:].any()
    images, moved = LatentRCNNTransform()(x, _targets(), with_boxes=True)
    assert images.tensors is x  # no resize, no normalisation, no padding to 32
    assert images.image_sizes == [(75, 93), (62, 77)]  # the image's corner on the canvas
    torch.testing.assert_close(moved[0]["boxes"][0], torch.tensor([13.0, 17.0, 43.0, 55.0]))
    assert moved[0]["labels"].tolist() == [1, 3]  # 0 is the background
    det = [{"boxes": moved[0]["boxes"], "labels": moved[0]["labels"], "scores": torch.ones(2)}]
    back = LatentRCNNTransform().postprocess(det, _targets()[:1])
    torch.testing.assert_close(back[0]["boxes"], _targets()[0]["boxes"])
    assert back[0]["labels"].tolist() == [0, 2]


def test_latent_transform_refuses_degenerate_boxes():
    t = _targets()[:1]
    t[0]["boxes"] = torch.tensor([[10.0, 10.0, 10.0, 20.0]])
    t[0]["labels"] = torch.tensor([0])
    with pytest.raises(ValueError, match="degenerate box"):
        LatentRCNNTransform()(torch.zeros(1, 4, 5, 6), t, with_boxes=True)


def test_anchors_sit_at_pixel_strides_not_latent_cells():
    gen = LatentAnchorGenerator(((32,), (64,)), (16, 32))
    x = torch.zeros(1, 8, 4, 6)  # a 64 x 96 pixel canvas
    images, _ = LatentRCNNTransform()(x, [{"image_size": (64, 96), "canvas_offset": (0, 0)}], False)
    anchors = gen(images, [torch.zeros(1, 4, 4, 6), torch.zeros(1, 4, 2, 3)])[0]
    assert anchors.shape == (3 * (24 + 6), 4)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    fine, coarse = centres[: 3 * 24], centres[3 * 24 :]
    assert sorted({round(v) for v in fine[:, 0].tolist()}) == [0, 16, 32, 48, 64, 80]
    assert sorted({round(v) for v in coarse[:, 1].tolist()}) == [0, 32]
    widths = (anchors[:, 2] - anchors[:, 0]).round()
    assert set(widths[3 * 24 :].tolist()) == {
        46.0,
        64.0,
        90.0,
    }  # 64 px at ratios 2, 1, 0.5 (rounded)


def test_pixel_detector_refuses_latent_channels():
    from latentcache.errors import ConfigError

    with pytest.raises(ConfigError, match="RGB"):
        create_detector("fasterrcnn-resnet50-fpn", 8, 3, pretrained=False)

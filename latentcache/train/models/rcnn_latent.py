"""Faster R-CNN on latents: torchvision's RPN and RoI heads, in image pixels, over a backbone
that reads the latent grid::

    y_hat (B, M, h, w)  +  per image: image_size (H, W), canvas_offset (pad_top, pad_left)
      └► LatentRCNNTransform   no resize, no 3-channel normalisation, no padding to 32: the
                               latents pass as they are (zero-padded to the batch's h x w);
                               the frame is the codec's padded canvas (16h x 16w pixels):
                               boxes + (pad_left, pad_top), labels + 1 (0 = background);
                               image_sizes = the image's bottom-right corner on the canvas
      └► backbone (any module with .out_channels; features at known pixel strides)
      └► RPN: LatentAnchorGenerator   anchors at the features' strides in canvas pixels (16 x
                                      their latent strides), given, not inferred from a tensor
      └► RoI heads: MultiScaleRoIAlign with fixed scales (1 / stride of each pooled level)
      └► postprocess   boxes - (pad_left, pad_top), clipped to the unpadded image; labels - 1

torchvision's ``GeneralizedRCNNTransform`` would resize a latent to 800 px, normalise it with
ImageNet's 3-channel statistics and pad it to 32: none of it applies here. Its anchor
generator infers strides as ``tensor size // feature size``, which for a latent gives latent
cells, not pixels; and ``MultiScaleRoIAlign`` infers scales by rounding. Both are set from the
backbone's declared strides instead. Latent cell (i, j) covers canvas pixels
``[16i, 16i + 16) x [16j, 16j + 16)``, image pixels from ``(16i - pad_top, 16j - pad_left)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import initLevelMapper

__all__ = [
    "CELL",
    "LatentRCNNTransform",
    "LatentAnchorGenerator",
    "LatentFasterRCNN",
    "batch_latents",
    "offset_and_size",
]

CELL = 16  # image pixels per latent cell (the codec's total stride)
ASPECT_RATIOS = (0.5, 1.0, 2.0)


def batch_latents(xs: Sequence[Tensor] | Tensor) -> Tensor:
    """One (B, C, h, w) tensor: a batch as it is, or latents zero-padded at bottom/right."""
    if isinstance(xs, Tensor):
        return xs
    h = max(int(x.shape[-2]) for x in xs)
    w = max(int(x.shape[-1]) for x in xs)
    out = xs[0].new_zeros((len(xs), xs[0].shape[0], h, w))
    for i, x in enumerate(xs):
        out[i, :, : x.shape[-2], : x.shape[-1]] = x
    return out


def offset_and_size(t: dict) -> tuple[int, int, int, int]:
    """``(pad_top, pad_left, H, W)`` of one image's target dict."""
    top, left = (int(v) for v in t["canvas_offset"])
    h, w = (int(v) for v in t["image_size"])
    return top, left, h, w


class LatentRCNNTransform(nn.Module):
    """Puts latents and targets on the canvas frame, and predictions back on the image."""

    def __init__(self, cell: int = CELL) -> None:
        super().__init__()
        self.cell = cell

    def forward(
        self, x: Tensor, targets: list[dict], with_boxes: bool
    ) -> tuple[ImageList, list[dict] | None]:
        if len(targets) != x.shape[0]:
            raise ValueError(f"{x.shape[0]} latents but {len(targets)} target dicts")
        canvas_h, canvas_w = self.cell * x.shape[-2], self.cell * x.shape[-1]
        sizes, moved = [], []
        for t in targets:
            top, left, h, w = offset_and_size(t)
            sizes.append((max(1, min(top + h, canvas_h)), max(1, min(left + w, canvas_w))))
            if with_boxes:
                moved.append(self._to_canvas(t, top, left))
        return ImageList(x, sizes), (moved if with_boxes else None)

    @staticmethod
    def _to_canvas(t: dict, top: int, left: int) -> dict:
        boxes = t["boxes"].to(torch.float32).reshape(-1, 4)
        if bool((boxes[:, 2:] <= boxes[:, :2]).any()):
            raise ValueError(f"degenerate box among {boxes.tolist()[:3]}: width and height > 0")
        shift = boxes.new_tensor([left, top, left, top])
        return {"boxes": boxes + shift, "labels": t["labels"].to(torch.int64) + 1}

    def postprocess(self, detections: list[dict], targets: list[dict]) -> list[dict]:
        out = []
        for det, t in zip(detections, targets, strict=True):
            top, left, h, w = offset_and_size(t)
            boxes = det["boxes"] - det["boxes"].new_tensor([left, top, left, top])
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
            out.append({"boxes": boxes, "labels": det["labels"] - 1, "scores": det["scores"]})
        return out


class LatentAnchorGenerator(AnchorGenerator):
    """torchvision's anchors, at given pixel strides (one per feature map)."""

    def __init__(self, sizes: Sequence[Sequence[int]], strides: Sequence[int]) -> None:
        sizes = tuple(tuple(s) for s in sizes)
        super().__init__(sizes, (ASPECT_RATIOS,) * len(sizes))
        if len(strides) != len(sizes):
            raise ValueError(f"{len(strides)} strides for {len(sizes)} feature maps")
        self.strides = tuple(int(s) for s in strides)

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        grid_sizes = [f.shape[-2:] for f in feature_maps]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        strides = [[torch.tensor(s, dtype=torch.int64, device=device)] * 2 for s in self.strides]
        self.set_cell_anchors(dtype, device)
        anchors = torch.cat(self.grid_anchors(grid_sizes, strides))
        return [anchors for _ in image_list.image_sizes]


def fixed_roi_align(featmap_names: Sequence[str], strides: Sequence[int]) -> MultiScaleRoIAlign:
    """RoIAlign over ``featmap_names`` whose pixel strides are ``strides`` (powers of 2)."""
    pool = MultiScaleRoIAlign(list(featmap_names), output_size=7, sampling_ratio=2)
    levels = [int(round(math.log2(s))) for s in strides]
    if [2**k for k in levels] != list(strides):
        raise ValueError(f"RoI strides {list(strides)} should be powers of 2")
    pool.scales = [1.0 / s for s in strides]
    pool.map_levels = initLevelMapper(levels[0], levels[-1])
    return pool


class LatentFasterRCNN(FasterRCNN):
    """Faster R-CNN whose backbone reads latents; see the module docstring.

    ``backbone``: features at pixel ``strides`` (anchor ``sizes`` one tuple per feature map);
    ``roi_maps``: the names of the maps RoIs are pooled from (the first ``len(roi_maps)``
    strides). ``num_classes`` counts categories without background.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        strides: Sequence[int],
        sizes: Sequence[Sequence[int]],
        roi_maps: Sequence[str],
        inputs: tuple[str, ...] = ("y_hat",),
        **rcnn_kwargs,
    ) -> None:
        super().__init__(
            backbone,
            num_classes=num_classes + 1,
            rpn_anchor_generator=LatentAnchorGenerator(sizes, strides),
            box_roi_pool=fixed_roi_align(roi_maps, strides[: len(roi_maps)]),
            **rcnn_kwargs,
        )
        self.transform = LatentRCNNTransform()
        self.inputs = tuple(inputs)
        self.strides = tuple(strides)

    def forward(self, *xs: Tensor, targets: list[dict]):  # type: ignore[override]
        x = batch_latents(xs[0]) if len(xs) == 1 else torch.cat([batch_latents(t) for t in xs], 1)
        images, canvas_targets = self.transform(x, targets, with_boxes=self.training)
        features = self.backbone(images.tensors)
        proposals, proposal_losses = self.rpn(images, features, canvas_targets)
        detections, detector_losses = self.roi_heads(
            features, proposals, images.image_sizes, canvas_targets
        )
        if self.training:
            return {**detector_losses, **proposal_losses}
        return self.transform.postprocess(detections, targets)

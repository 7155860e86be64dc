"""Boxes through the latents' crop and flip: one geometric change, applied to both.

::

    image (H, W) at canvas_offset (pad_top, pad_left) on the codec's canvas (16h x 16w px);
    latent cell (i, j) covers canvas pixels [16i, 16i + 16) x [16j, 16j + 16)

    crop (top, left, size) in cells ─► the window [16 top, 16 (top + size)) of the canvas:
        boxes on the canvas (+ offset) ─► - 16 (left, top) ─► clipped to the part of the
        image inside the window ─► boxes left without area are dropped
    flip ─► x -> 16 size - x on the window (x1 and x2 swap), the image's part mirrored too

    result: a target dict of the same form, for the *visible image*: ``image_size`` = the
    part of the image inside the window, ``canvas_offset`` = where that part sits on the
    window, boxes relative to it. The detector's latent transform adds the offset back, so
    every box lands on the latent cells of the crop that hold its object.

Evaluation uses whole images: no crop, no flip, targets unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["CELL", "crop_flip_boxes", "crop_flip_batch"]

CELL = 16  # image pixels per latent cell
MIN_SIDE = 1.0  # pixels: a box narrower or lower than this after clipping has vanished


def _visible(t: dict, top: int, left: int, size_hw: tuple[int, int]) -> tuple[float, ...]:
    """The image's part inside the crop window, in window pixels: (y0, x0, y1, x1)."""
    (pad_top, pad_left), (h, w) = t["canvas_offset"], t["image_size"]
    oy, ox = int(pad_top) - CELL * top, int(pad_left) - CELL * left  # image origin in window
    win_h, win_w = CELL * size_hw[0], CELL * size_hw[1]
    return max(0, oy), max(0, ox), min(win_h, oy + int(h)), min(win_w, ox + int(w)), oy, ox


def crop_flip_boxes(t: dict, top: int, left: int, size_hw: tuple[int, int], flipped: bool) -> dict:
    """One image's target dict after a crop of ``size_hw`` cells at (``top``, ``left``) cells
    and an optional horizontal flip; keys other than the geometry's are filtered alike."""
    y0, x0, y1, x1, oy, ox = _visible(t, top, left, size_hw)
    boxes = t["boxes"].to(torch.float32).reshape(-1, 4)
    boxes = boxes + boxes.new_tensor([ox, oy, ox, oy])  # on the targets' device
    boxes[:, 0::2] = boxes[:, 0::2].clamp(x0, max(x0, x1))
    boxes[:, 1::2] = boxes[:, 1::2].clamp(y0, max(y0, y1))
    keep = ((boxes[:, 2] - boxes[:, 0]) >= MIN_SIDE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_SIDE)
    boxes = boxes[keep]
    if flipped:
        win_w = CELL * size_hw[1]
        boxes = torch.stack(
            [win_w - boxes[:, 2], boxes[:, 1], win_w - boxes[:, 0], boxes[:, 3]], dim=1
        )
        x0, x1 = win_w - x1, win_w - x0
    keep = keep.to(t["labels"].device) if "labels" in t else keep
    out = {k: v[keep] for k, v in t.items() if k in ("labels", "iscrowd")}
    out["boxes"] = boxes - boxes.new_tensor([x0, y0, x0, y0])
    out["image_size"] = (max(0, y1 - y0), max(0, x1 - x0))
    out["canvas_offset"] = (y0, x0)
    return out


def crop_flip_batch(
    targets: Sequence[dict],
    top: torch.Tensor | None,
    left: torch.Tensor | None,
    flipped: torch.Tensor | None,
    size_hw: tuple[int, int],
) -> list[dict]:
    """:func:`crop_flip_boxes` per image, with the per-sample draws of
    ``train.augment.crop_flip_params`` (None: no crop, the whole ``size_hw`` latent)."""
    out = []
    for i, t in enumerate(targets):
        y = int(top[i]) if top is not None else 0
        x = int(left[i]) if left is not None else 0
        f = bool(flipped[i]) if flipped is not None else False
        out.append(crop_flip_boxes(t, y, x, size_hw, f))
    return out

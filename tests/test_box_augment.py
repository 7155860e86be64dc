"""The alignment test: odd-size images with objects at known boxes, encoded by a real codec;
after the latents' crops and flips, the mapped boxes sit on the latent cells that hold the
objects. Plus the geometry by hand: shifts, clips, drops and mirrors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detection_fixtures import photos

from latentcache.codec.latents import pad_image
from latentcache.finetune.detection import canvas_offset
from latentcache.train.augment import apply_crop_flip, crop_flip_params
from latentcache.train.box_augment import CELL, crop_flip_batch, crop_flip_boxes

H, W = 151, 213  # odd: the canvas offset (pad_top, pad_left) is not a multiple of 16
OBJECTS = [(30, 20, 78, 70), (140, 88, 190, 140)]  # xyxy, real photo patches on flat grey


def _scene(with_objects: bool) -> np.ndarray:
    img = np.full((H, W, 3), 128, np.uint8)
    if with_objects:
        sources = photos()
        for (x1, y1, x2, y2), src in zip(OBJECTS, sources, strict=False):
            img[y1:y2, x1:x2] = src[60 : 60 + y2 - y1, 60 : 60 + x2 - x1]
    return img


def _y_hat(model, img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        return torch.round(model.g_a(pad_image(x)))[0]  # (M, h, w): what the store holds


@pytest.fixture(scope="module")
def energy(tiny_model) -> torch.Tensor:
    """Per latent cell, how much the objects changed y_hat: (h, w)."""
    diff = _y_hat(tiny_model, _scene(True)) - _y_hat(tiny_model, _scene(False))
    return diff.abs().sum(0)


def _target() -> dict:
    return {
        "boxes": torch.tensor(OBJECTS, dtype=torch.float32),
        "labels": torch.tensor([0, 1]),
        "iscrowd": torch.tensor([0, 0]),
        "image_size": (H, W),
        "canvas_offset": canvas_offset(H, W),
    }


def test_offsets_are_not_cell_aligned():
    top, left = canvas_offset(H, W)
    assert (top, left) == (20, 21) and top % CELL and left % CELL


def _on_window(top: int, left: int, size: int, flipped: bool) -> torch.Tensor:
    """The objects' whole boxes in window pixels, neither clipped nor dropped (computed here
    from the definition, independently of the code under test)."""
    pad_top, pad_left = canvas_offset(H, W)
    b = torch.tensor(OBJECTS, dtype=torch.float32)
    b = b + torch.tensor([pad_left - CELL * left, pad_top - CELL * top] * 2, dtype=torch.float32)
    if flipped:
        b = torch.stack([CELL * size - b[:, 2], b[:, 1], CELL * size - b[:, 0], b[:, 3]], 1)
    return b


def _cells_of(box, grow: int = 0) -> tuple[slice, slice]:
    x1, y1, x2, y2 = (float(v) for v in box)
    rows = slice(max(0, int(y1 // CELL) - grow), max(0, int(-(-y2 // CELL)) + grow))
    cols = slice(max(0, int(x1 // CELL) - grow), max(0, int(-(-x2 // CELL)) + grow))
    return rows, cols


def test_boxes_land_on_the_cells_that_hold_their_objects(energy):
    h, w = energy.shape
    assert (h, w) == (192 // CELL, 256 // CELL)
    strong = 0.3 * float(energy.max())
    g = torch.Generator().manual_seed(0)
    size, seen_flip, seen_drop = 10, 0, 0
    for _ in range(24):
        top, left, flipped = crop_flip_params(1, h, w, size, True, g)
        e = apply_crop_flip(energy[None, None], top, left, flipped, size)[0, 0]
        t = crop_flip_batch([_target()], top, left, flipped, (size, size))[0]
        whole = _on_window(int(top), int(left), size, bool(flipped))
        seen_flip += bool(flipped[0])
        seen_drop += len(t["boxes"]) < len(OBJECTS)
        # the latent's strongly changed cells are the objects' cells (g_a's reach: one cell)
        near = torch.zeros_like(e, dtype=torch.bool)
        for box in whole:
            near[_cells_of(box, grow=1)] = True
        assert not ((e > strong) & ~near).any()
        # the kept boxes are the whole boxes clipped to the window's part of the image
        (vy, vx), (vh, vw) = t["canvas_offset"], t["image_size"]
        on_window = t["boxes"] + torch.tensor([vx, vy, vx, vy], dtype=torch.float32)
        clipped = whole.clone()
        clipped[:, 0::2] = clipped[:, 0::2].clamp(vx, vx + vw)
        clipped[:, 1::2] = clipped[:, 1::2].clamp(vy, vy + vh)
        alive = ((clipped[:, 2] - clipped[:, 0]) >= 1) & ((clipped[:, 3] - clipped[:, 1]) >= 1)
        torch.testing.assert_close(on_window, clipped[alive])
        assert t["labels"].tolist() == torch.arange(len(OBJECTS))[alive].tolist()
        # and a box with enough of its object in view sits on strongly changed cells
        for box in on_window:
            if min(box[2] - box[0], box[3] - box[1]) >= CELL:
                assert e[_cells_of(box)].max() > strong
    assert seen_flip and seen_drop  # both flips and crops that lose an object were drawn


def test_crop_shifts_clips_and_drops_by_hand():
    t = _target()  # offset (20, 21): image x = canvas x - 21, y = canvas y - 20
    out = crop_flip_boxes(t, 4, 2, (6, 8), False)  # window: canvas y 64..160, x 32..160
    # the image inside the window: canvas y 64..160 -> window y 0..96; x 32..160 -> 0..128
    assert out["canvas_offset"] == (0, 0) and out["image_size"] == (96, 128)
    # object 0: canvas (51, 40, 99, 90) -> window (19, -24, 67, 26), clipped at the top
    torch.testing.assert_close(out["boxes"][0], torch.tensor([19.0, 0.0, 67.0, 26.0]))
    # object 1: canvas (161, 108, 211, 160): right of the window -> dropped
    assert out["labels"].tolist() == [0] and out["iscrowd"].tolist() == [0]


def test_flip_mirrors_boxes_and_the_visible_image():
    t = _target()
    out = crop_flip_boxes(t, 0, 0, (12, 16), True)  # the whole 192 x 256 canvas, mirrored
    assert out["canvas_offset"] == (20, 256 - 21 - W) and out["image_size"] == (H, W)
    torch.testing.assert_close(out["boxes"][0], torch.tensor([W - 78.0, 20.0, W - 30.0, 70.0]))
    back = crop_flip_boxes(out, 0, 0, (12, 16), True)
    torch.testing.assert_close(back["boxes"], t["boxes"])
    assert back["canvas_offset"] == t["canvas_offset"]


def test_a_window_without_the_image_keeps_no_box():
    out = crop_flip_boxes(_target(), 0, 15, (2, 1), False)  # canvas x 240..256: right of it
    assert len(out["boxes"]) == 0 and out["image_size"][1] == 0

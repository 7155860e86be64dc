"""Semantic segmentation: a uint8 mask of class indices per image, 255 = ignore, at full
image resolution, exactly as the dataset gives it.

::

    encode   the dataset's mask file (datasets.masks.read_mask: indices) ─► (H, W) uint8,
             size checked against the decoded image's
    Zarr     mask (R, H_max, W_max) uint8, fill 255, one chunk per row, sharded like y_hat;
             the real size is the row's image_size; Blosc-lz4hc (stores before: -zstd)
    WDS      <key>.mask.png   8-bit grayscale PNG of the indices: plain webdataset's "l8",
             "pil" or "l" decoders give the indices back; written unfiltered
             (tasks/plain_png.py)
             <key>.mask.npy.zst  the same indices, (H, W) uint8, Zstandard .npy as the
             latents: what the loader reads (a tenth of the PNG's inflate time, at about
             the PNG's bytes); the full read (verify, wds_samples) decodes both and refuses
             a sample where they differ; stores written before have the PNG alone (read
             without Pillow when plain, any other grayscale PNG through it)
    loader   each mask placed on its codec canvas (B, 16h, 16w), 255 off the image: latent
             cell (i, j) covers canvas pixels [16i, 16i + 16) x [16j, 16j + 16); in the
             loader's recycled buffers (target_layout)
    augment  the latents' crop (cells) and flip, applied to the canvas at 16x
    metric   torchmetrics confusion matrix over the whole split (VOC): mIoU, per-class IoU
             (null for a class absent from prediction and ground truth), pixel accuracy

A model's logits (any resolution) are upsampled bilinearly to the canvas and scored where
the target is not 255: the same pixels as cropping the canvas by ``canvas_offset`` to the
unpadded image, since everything off the image is 255.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from latentcache.datasets.masks import IGNORE_INDEX, read_mask
from latentcache.errors import SampleError
from latentcache.tasks.base import Task, register_task
from latentcache.tasks.plain_png import read_plain_png, write_plain_png

__all__ = [
    "SegmentationTask",
    "IGNORE_INDEX",
    "MASK_MEMBER",
    "MASK_ARRAY",
    "mask_png",
    "decode_mask_png",
    "decode_mask_npy",
]

MASK_MEMBER = "mask.png"  # what plain webdataset decodes (.decode("l8"))
MASK_ARRAY = "mask.npy.zst"  # the same indices, what the loader reads
CELL = 16  # image pixels per latent cell (the codec's total stride)


def mask_png(mask: np.ndarray) -> bytes:
    """An (H, W) uint8 mask as an 8-bit grayscale PNG (the WebDataset member), unfiltered
    (tasks/plain_png.py: smaller than Pillow's for masks, and read without Pillow)."""
    return write_plain_png(np.ascontiguousarray(mask, dtype=np.uint8))


def decode_mask_png(data: bytes, image_hw: tuple[int, int], max_hw: tuple[int, int]) -> np.ndarray:
    """A ``.mask.png`` member, checked before any pixel is decoded: a PNG, 8-bit grayscale,
    exactly ``image_hw``, within ``max_hw``. ValueError with the reason otherwise. A plain
    PNG (what :func:`mask_png` writes) is read without Pillow; any other goes through it."""
    from PIL import Image, UnidentifiedImageError

    if image_hw[0] <= max_hw[0] and image_hw[1] <= max_hw[1]:
        plain = read_plain_png(data, image_hw)
        if plain is not None:
            return plain

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=["PNG"])
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{MASK_MEMBER}: decompression bomb ({str(exc)[:100]})") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{MASK_MEMBER}: not a PNG ({str(exc)[:100]})") from None
    with im:
        w, h = im.size
        if h > max_hw[0] or w > max_hw[1]:
            raise ValueError(
                f"{MASK_MEMBER}: declares {h}x{w}, over the split's largest image "
                f"{max_hw[0]}x{max_hw[1]} (decompression bomb or oversized mask)"
            )
        if im.mode != "L":
            raise ValueError(f"{MASK_MEMBER}: mode {im.mode}, expected 8-bit grayscale (L)")
        if (h, w) != tuple(image_hw):
            raise ValueError(f"{MASK_MEMBER}: {h}x{w}, its image is {image_hw[0]}x{image_hw[1]}")
        try:
            im.load()
        except (OSError, ValueError) as exc:
            raise ValueError(f"{MASK_MEMBER}: truncated or corrupt ({str(exc)[:100]})") from None
        return np.array(im, dtype=np.uint8)


def decode_mask_npy(data, image_hw: tuple[int, int], max_hw: tuple[int, int]) -> np.ndarray:
    """A ``.mask.npy.zst`` member, checked before its data is decompressed: the zstd frame
    within the split's largest mask (``max_hw``), a .npy of uint8 (H, W) (nothing
    unpickled), exactly ``image_hw``. ValueError with the reason otherwise."""
    from latentcache.store.npy_member import ArraySpec, decode_array

    try:
        a = decode_array("npy.zst", data, ArraySpec("uint8", None, tuple(max_hw)))
    except ValueError as exc:
        raise ValueError(f"{MASK_ARRAY}: {exc}") from None
    if a.shape != tuple(image_hw):
        raise ValueError(
            f"{MASK_ARRAY}: {a.shape[0]}x{a.shape[1]}, its image is {image_hw[0]}x{image_hw[1]}"
        )
    return a


def place_on_canvas(canvas: np.ndarray, mask, offset, image_size) -> None:
    """Write all of ``canvas`` (H, W): ``mask`` (the loader's ImageTarget: the image's
    ``shape``, decoded straight into place) at ``offset``, 255 around it. The canvas is
    filled first and the mask copied over it: about half the time of filling only the four
    margins, whose short strided rows cost more than the memset, which also brings the
    canvas into cache for the copy."""
    (top, left), (h, w) = (int(v) for v in offset), (int(v) for v in image_size)
    if tuple(mask.shape) != (h, w) or top < 0 or left < 0:
        raise ValueError(f"mask {tuple(mask.shape)} at {(top, left)}: its image is {h}x{w}")
    if top + h > canvas.shape[0] or left + w > canvas.shape[1]:
        raise ValueError(f"image {h}x{w} at {(top, left)} is off the canvas {canvas.shape}")
    canvas.fill(IGNORE_INDEX)
    mask.decode_into(canvas[top : top + h, left : left + w])


@register_task
class SegmentationTask(Task):
    name = "segmentation"
    labelled = False
    default_model = "cresnet51-d"
    member_suffixes = (MASK_ARRAY, MASK_MEMBER)
    target_names = ("mask",)
    pads_latents = True
    score_key = "miou"
    score_label = "mIoU"
    record_keys = ("miou", "pixel_accuracy", "loss")
    ignore_index = IGNORE_INDEX

    def manifest_entry(self, options: Mapping | None = None) -> dict:
        return {"name": self.name, "ignore_index": IGNORE_INDEX}

    def read_targets(self, target: str | None, root: Path, image_hw: tuple[int, int]) -> dict:
        if not target:
            raise SampleError("no mask file listed for this image")
        # refused before decoding when its size is not its image's (bounded as the image)
        mask = read_mask(root / target, image_hw=image_hw, name=target)
        return {"mask": mask}

    def zarr_arrays(self, image_hw: tuple[int, int]) -> dict[str, tuple]:
        from zarr.codecs import BloscCodec, Crc32cCodec

        # lz4hc: masks decode in about half of Blosc-zstd 5's time, at about twice its few
        # bytes (2 % -> 4 % of the latents); stores written with zstd read as they are
        codecs = (BloscCodec(cname="lz4hc", clevel=9, shuffle="noshuffle"), Crc32cCodec())
        return {"mask": (tuple(int(v) for v in image_hw), "uint8", IGNORE_INDEX, codecs)}

    def wds_members(self, targets: Mapping[str, np.ndarray]) -> dict[str, bytes]:
        from latentcache.store.npy_member import npy_bytes

        mask = np.ascontiguousarray(targets["mask"], dtype=np.uint8)
        return {MASK_MEMBER: mask_png(mask), MASK_ARRAY: npy_bytes(mask)}

    def target_file(self, targets: Mapping[str, np.ndarray]) -> tuple[str, bytes]:
        return MASK_MEMBER, mask_png(targets["mask"])

    def parse_members(
        self, raw: Mapping[str, bytes], image_hw: tuple[int, int], max_hw: tuple[int, int]
    ) -> dict[str, np.ndarray]:
        """The mask from every mask member the sample has (both, or the PNG alone in stores
        written before), each checked; ValueError if none, or if they differ."""
        if MASK_MEMBER not in raw and MASK_ARRAY not in raw:
            raise ValueError(f"missing member {MASK_MEMBER}")
        masks = []
        if MASK_ARRAY in raw:
            masks.append(decode_mask_npy(raw[MASK_ARRAY], image_hw, max_hw))
        if MASK_MEMBER in raw:
            masks.append(decode_mask_png(raw[MASK_MEMBER], image_hw, max_hw))
        if len(masks) == 2 and not np.array_equal(*masks):
            n = int((masks[0] != masks[1]).sum())
            raise ValueError(
                f"{MASK_ARRAY} and {MASK_MEMBER} differ at {n} of {masks[0].size} pixels"
            )
        return {"mask": masks[0]}

    def read_member(
        self, raw: Mapping[str, bytes], name: str, image_hw: tuple[int, int], max_hw
    ) -> np.ndarray:
        """The loader's read: the ``.mask.npy.zst`` alone where the sample has it."""
        if name == "mask" and MASK_ARRAY in raw:
            return decode_mask_npy(raw[MASK_ARRAY], image_hw, max_hw)
        return super().read_member(raw, name, image_hw, max_hw)

    # ---------------------------------------------------------------- training

    target_keys = ("mask",)

    def target_layout(self, latent_hw: tuple[int, int]) -> dict[str, tuple]:
        hb, wb = latent_hw
        return {
            "mask": ((CELL * hb, CELL * wb), np.dtype(np.uint8)),
            "image_size": ((2,), np.dtype(np.int32)),
            "canvas_offset": ((2,), np.dtype(np.int32)),
        }

    def collate_targets(self, rows: list[dict], latent_hw: tuple[int, int], out=None) -> dict:
        import torch

        if out is None:
            out = {
                k: torch.from_numpy(np.empty((len(rows), *shape), dtype))
                for k, (shape, dtype) in self.target_layout(latent_hw).items()
            }
        canvas = out["mask"].numpy()  # (B, 16 hb, 16 wb): cell (i, j) covers 16i.., 16j..
        for i, r in enumerate(rows):
            place_on_canvas(canvas[i], r["mask"], r["canvas_offset"], r["image_size"])
        out["image_size"].numpy()[:] = [r["image_size"] for r in rows]
        out["canvas_offset"].numpy()[:] = [r["canvas_offset"] for r in rows]
        return {"label": torch.full((len(rows),), -1, dtype=torch.long), **out}

    def map_targets(self, batch: dict, params, crop: int | None, latent_hw) -> object:
        import torch
        import torch.nn.functional as F

        mask = batch["mask"]  # (B, 16h, 16w) on the canvas
        if params is None:
            return mask
        top, left, flipped = params
        flipped = flipped.to(mask.device)
        if top is None:  # flip only, over the whole (padded) canvas
            return torch.where(flipped[:, None, None], mask.flip(-1), mask)
        h, w = latent_hw  # the latents were padded to at least crop x crop cells
        pad = (0, CELL * w - mask.shape[-1], 0, CELL * h - mask.shape[-2])
        if any(pad):
            mask = F.pad(mask, pad, value=IGNORE_INDEX)
        size = CELL * crop
        base = torch.arange(size)
        rows = CELL * top[:, None] + base  # (B, size)
        cols = CELL * left[:, None] + torch.where(flipped.cpu()[:, None], size - 1 - base, base)
        b = torch.arange(mask.shape[0])[:, None, None]
        dev = mask.device
        return mask[b.to(dev), rows[:, :, None].to(dev), cols[:, None, :].to(dev)]

    def loss(self, logits, targets, label_smoothing: float = 0.0):
        """Cross entropy on the canvas (logits upsampled bilinearly), 255 ignored; zero, with
        a gradient, for a batch whose pixels are all ignored."""
        import torch.nn.functional as F

        from latentcache.tasks.seg_metric import upsample

        up = upsample(logits.float(), targets.shape[-2:])
        t = targets.long()
        total = F.cross_entropy(
            up, t, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing, reduction="sum"
        )
        return total / (t != IGNORE_INDEX).sum().clamp_min(1)

    def hits(self, logits, targets) -> tuple:
        from latentcache.tasks.seg_metric import upsample

        pred = upsample(logits.detach().float(), targets.shape[-2:]).argmax(1)
        valid = targets != IGNORE_INDEX
        return ((pred == targets) & valid).sum(), valid.sum()

    def headline(self, result: Mapping) -> tuple[str, Mapping]:
        line = (
            f"mIoU {result['miou']:.4f}  pixel accuracy {result['pixel_accuracy']:.4f}  "
            f"n={result['count']}"
        )
        return line, result["per_class_iou"]

    def make_meter(self, num_classes: int):
        from latentcache.tasks.seg_metric import SegmentationMeter

        return SegmentationMeter(num_classes)

    # ---------------------------------------------------------------- report

    def report_section(self):
        from latentcache.report.segmentation import SECTION

        return SECTION

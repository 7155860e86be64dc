"""Image files: finding them in a folder, and reading one into an RGB array or a reason why not.

::

    folder ─► list_images (IMAGE_EXTENSIONS, any case; hidden files and folders skipped; sorted)
    bytes  ─► load_image ─► LoadedImage(rgb (H, W, 3) uint8, sha256)  | SampleError(reason)
    path   ─► header_size ─► (H, W) after EXIF orientation, from the header alone

Used by datasets (indexing), pipeline (encoding), and codec (training and evaluation images).

EXIF orientation is applied; every mode becomes 8-bit RGB: L, LA, P (palette) and RGBA/PA
through Pillow's ``convert("RGB")`` (alpha dropped, as torchvision and timm do), CMYK through
Pillow's profile-free conversion, 16-bit and 32-bit integer or float grayscale by scaling
their range to 0..255 (``convert`` would clip them). The pixel count is checked against a
decompression-bomb limit before any pixel is decoded.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from latentcache.errors import SampleError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "LoadedImage",
    "load_image",
    "header_size",
    "is_image_name",
    "list_images",
]

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
    ".ppm",
    ".pgm",
)

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default for Image.MAX_IMAGE_PIXELS
_ROTATING = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    sha256: str


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if im.mode == "F":
            top = max(1.0, float(a.max(initial=0)))
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def load_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode ``data`` to RGB; raises SampleError with the reason for anything unusable."""
    if not data:
        raise SampleError("empty file")
    sha = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():  # the size check below reports bombs itself
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        w, h = im.size
        if w * h > max_pixels:
            raise SampleError(f"decompression bomb: {w}x{h} = {w * h} pixels > limit {max_pixels}")
        if w < 1 or h < 1:
            raise SampleError(f"image has no pixels ({w}x{h})")
        im.load()
        im = ImageOps.exif_transpose(im) or im
        rgb = np.array(_to_rgb(im), dtype=np.uint8)  # a writable copy
    except SampleError:
        raise
    except UnidentifiedImageError:
        raise SampleError(
            "not an image Pillow can identify (corrupt or not an image file)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise SampleError(f"decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError, MemoryError) as exc:
        raise SampleError(f"cannot decode image: {exc}") from None
    return LoadedImage(np.ascontiguousarray(rgb), sha)


def header_size(path) -> tuple[int, int] | None:
    """(H, W) after EXIF orientation from the header alone, or None when unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception:
        return None
    return (w, h) if orientation in _ROTATING else (h, w)


def is_image_name(name: str) -> bool:
    """A visible file whose extension (any case) is one of :data:`IMAGE_EXTENSIONS`."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; hidden files and folders skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if is_image_name(name) and path.is_file():
                found.append(path)
    return sorted(found)

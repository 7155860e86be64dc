"""Segmentation masks: one file ─► (H, W) uint8 class indices exactly as the dataset gives them.

::

    *.png/*.gif/*.tif/... ─► Pillow, mode "P"  ─► the palette INDICES (never ``convert()``,
                                                   which gives colours or luminance)
                                   mode "L"    ─► the grey values as they are
                                   mode "1"    ─► 0 / 1
                                   mode "I*"   ─► as uint8 when every value is <= 255
    *.mat (SBD cls/*.mat)  ─► ``GTcls.Segmentation`` (MATLAB v5, read by scipy.io.loadmat)
    anything else          ─► SampleError (one line: the file and the reason)

255 is the ignore index (VOC's object outlines); values are not remapped here:
:func:`check_mask_values` says which values a dataset with ``n_classes`` classes may use.
Sizes are bounded before anything is allocated: the pixel count against the same
decompression-bomb limit as images (:data:`~latentcache.images.DEFAULT_MAX_PIXELS`), the
file size against :data:`MAX_MASK_FILE_BYTES`, and every zlib-compressed element of a .mat
file is inflated with a ceiling before scipy parses it; given its image's size, a mask of
another size is refused as soon as its size is known (encode does so: masks are bounded as
their images, by ``--max-pixels``). Nothing is unpickled.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path, PurePath

import numpy as np
from PIL import Image, UnidentifiedImageError

from latentcache.errors import SampleError
from latentcache.images import DEFAULT_MAX_PIXELS

__all__ = [
    "IGNORE_INDEX",
    "MASK_EXTENSIONS",
    "MAX_MASK_FILE_BYTES",
    "check_mask_values",
    "decode_mask",
    "read_mask",
    "voc_palette",
    "write_palette_mask",
]

IGNORE_INDEX = 255
MASK_EXTENSIONS = (".png", ".gif", ".bmp", ".tif", ".tiff", ".pgm", ".mat")
MAX_MASK_FILE_BYTES = 256 * 2**20  # no real mask file comes near this
_MAT_HEADER = 128
_MI_COMPRESSED = 15
_INT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def read_mask(
    path: str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    image_hw: tuple[int, int] | None = None,
    name: str | None = None,
) -> np.ndarray:
    """The mask file at ``path`` as an (H, W) uint8 array of class indices (255 = ignore).

    ``image_hw``: its image's (H, W), which the mask must match: a mask of another size is
    refused before its pixels are decoded (an image file's declared size; a .mat file's
    compressed elements inflate at most to that many pixels), so a mask is never read
    bigger than its image, which ``encode --max-pixels`` bounds. ``name``: how errors
    name the file (default: its file name)."""
    path = Path(path)
    name = name or path.name
    try:
        size = path.stat().st_size
        if size > MAX_MASK_FILE_BYTES:
            raise SampleError(f"mask {name}: file of {size} bytes > limit {MAX_MASK_FILE_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise SampleError(f"mask {name}: cannot read: {exc.strerror or exc}") from None
    return decode_mask(data, name, max_pixels, image_hw)


def decode_mask(
    data: bytes,
    name: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    image_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode the bytes of mask file ``name`` (its suffix picks the format); see :func:`read_mask`."""
    if not data:
        raise SampleError(f"mask {name}: empty file")
    if len(data) > MAX_MASK_FILE_BYTES:
        raise SampleError(f"mask {name}: {len(data)} bytes > limit {MAX_MASK_FILE_BYTES}")
    if image_hw is not None:
        max_pixels = min(max_pixels, int(image_hw[0]) * int(image_hw[1]))
    if PurePath(name).suffix.lower() == ".mat":
        mask = _decode_mat(data, name, max_pixels, image_hw)
    else:
        mask = _decode_image(data, name, max_pixels, image_hw)
    return np.ascontiguousarray(mask, dtype=np.uint8)


def check_mask_values(mask: np.ndarray, n_classes: int, name: str = "mask") -> None:
    """SampleError unless every value of ``mask`` is a class index < ``n_classes`` or 255."""
    values = np.unique(mask)
    bad = values[(values >= n_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise SampleError(
            f"{name}: values {bad[:8].tolist()} are neither class indices in [0, {n_classes}) "
            f"nor the ignore index {IGNORE_INDEX}"
        )


def voc_palette(n: int = 256) -> np.ndarray:
    """PASCAL VOC's colour map, (n, 3) uint8: class i's colour from the bits of i (VOCdevkit's
    ``labelcolormap``); 255 (ignore) is the cream (224, 224, 192) of VOC's outlines."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def write_palette_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write (H, W) uint8 class indices as a palette PNG with VOC's colours, as VOC ships them."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask is {mask.shape} {mask.dtype}, expected (H, W) uint8")
    im = Image.fromarray(mask, mode="P")
    im.putpalette(voc_palette().reshape(-1).tolist())
    im.save(path, format="PNG")


# --- images (PNG and the other Pillow formats) ------------------------------------------


def _check_pixels(name: str, h: int, w: int, max_pixels: int, image_hw=None) -> None:
    if image_hw is not None and (h, w) != tuple(image_hw):
        raise SampleError(f"mask {name}: {h}x{w}, its image is {image_hw[0]}x{image_hw[1]}")
    if h < 1 or w < 1:
        raise SampleError(f"mask {name}: no pixels ({w}x{h})")
    if h * w > max_pixels:
        raise SampleError(
            f"mask {name}: decompression bomb: {w}x{h} = {w * h} pixels > limit {max_pixels}"
        )


def _decode_image(data: bytes, name: str, max_pixels: int, image_hw=None) -> np.ndarray:
    try:
        with warnings.catch_warnings():  # the size check reports bombs itself
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        with im:
            w, h = im.size
            _check_pixels(name, h, w, max_pixels, image_hw)
            return _image_indices(im, name)
    except SampleError:
        raise
    except UnidentifiedImageError:
        raise SampleError(f"mask {name}: not an image Pillow can identify") from None
    except Image.DecompressionBombError as exc:
        raise SampleError(f"mask {name}: decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError, MemoryError) as exc:
        raise SampleError(f"mask {name}: cannot decode: {exc}") from None


def _image_indices(im: Image.Image, name: str) -> np.ndarray:
    if im.mode in ("P", "L"):
        return np.array(im, dtype=np.uint8)  # "P": the palette indices, not the colours
    if im.mode == "1":
        return np.array(im, dtype=np.uint8)  # booleans -> 0 / 1
    if im.mode in _INT_MODES:
        a = np.asarray(im)
        return _as_uint8(a, name)
    raise SampleError(
        f"mask {name}: image mode {im.mode!r} holds colours, not class indices; expected a "
        f"palette (P) or grayscale (L) image whose values are the classes"
    )


def _as_uint8(a: np.ndarray, name: str) -> np.ndarray:
    if a.ndim != 2:
        raise SampleError(f"mask {name}: array of shape {a.shape}, expected 2-D (H, W)")
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise SampleError(f"mask {name}: {a.dtype} values, expected integer class indices")
    if a.size and (int(a.min()) < 0 or int(a.max()) > 255):
        raise SampleError(
            f"mask {name}: values in [{int(a.min())}, {int(a.max())}] do not fit uint8 class "
            f"indices [0, 255]"
        )
    return a.astype(np.uint8)


# --- SBD .mat files ---------------------------------------------------------------------


def _check_mat_elements(data: bytes, name: str, max_bytes: int) -> None:
    """Walk a MATLAB v5 file's top-level elements; inflate compressed ones with a ceiling."""
    if len(data) < _MAT_HEADER or data[126:128] not in (b"IM", b"MI"):
        raise SampleError(f"mask {name}: not a MATLAB v5 .mat file (v4 and v7.3 are not read)")
    order = "<" if data[126:128] == b"IM" else ">"
    pos, total = _MAT_HEADER, 0
    while pos + 8 <= len(data):
        dtype, nbytes = struct.unpack_from(f"{order}II", data, pos)
        if dtype >> 16:  # a small data element packed into its tag
            nbytes, dtype = dtype >> 16, dtype & 0xFFFF
        body = data[pos + 8 : pos + 8 + nbytes]
        if len(body) < nbytes:
            raise SampleError(f"mask {name}: truncated .mat file")
        total += _inflated_size(body, name, max_bytes - total) if dtype == _MI_COMPRESSED else 0
        pos += 8 + nbytes + (-nbytes % 8 if dtype != _MI_COMPRESSED else 0)


def _inflated_size(body: bytes, name: str, budget: int) -> int:
    try:
        out = zlib.decompressobj().decompress(body, max(budget, 0) + 1)
    except zlib.error as exc:
        raise SampleError(f"mask {name}: corrupt compressed .mat element: {exc}") from None
    if len(out) > budget:
        raise SampleError(
            f"mask {name}: decompression bomb: compressed .mat elements inflate past {budget} bytes"
        )
    return len(out)


def _decode_mat(data: bytes, name: str, max_pixels: int, image_hw=None) -> np.ndarray:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    _check_mat_elements(data, name, max_bytes=4 * max_pixels + 2**20)
    try:
        mat = loadmat(io.BytesIO(data), variable_names=["GTcls"], squeeze_me=False)
    except (
        MatReadError,
        ValueError,
        TypeError,
        OSError,
        NotImplementedError,
        MemoryError,
        KeyError,
        struct.error,
        zlib.error,
    ) as exc:
        raise SampleError(f"mask {name}: cannot read .mat file: {exc}") from None
    seg = _sbd_segmentation(mat, name)
    if seg.ndim != 2:
        raise SampleError(f"mask {name}: array of shape {seg.shape}, expected 2-D (H, W)")
    _check_pixels(name, *seg.shape, max_pixels, image_hw)
    return _as_uint8(seg, name)


def _sbd_segmentation(mat: dict, name: str) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD class file (a 1x1 struct, as torchvision's SBDataset)."""
    gt = mat.get("GTcls")
    fields = getattr(getattr(gt, "dtype", None), "names", None) or ()
    if gt is None or "Segmentation" not in fields or gt.size != 1:
        raise SampleError(
            f"mask {name}: no GTcls struct with a Segmentation field (the SBD cls/*.mat layout)"
        )
    seg = gt.reshape(-1)[0]["Segmentation"]
    if not isinstance(seg, np.ndarray):
        raise SampleError(f"mask {name}: GTcls.Segmentation is {type(seg).__name__}, not an array")
    return seg

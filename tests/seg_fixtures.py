"""Segmentation fixtures on real files, for any test: ``from seg_fixtures import ...``.

- :func:`photo_crops`: JPEG-ready RGB crops of scikit-image's CC0 photos, of odd sizes.
- :func:`blob_mask`: a mask of class blobs with VOC's 255 outlines around each object.
- :func:`write_sbd_mat`: an SBD ``cls/*.mat`` file (``GTcls`` struct: Segmentation,
  Boundaries as a cell of sparse matrices, CategoriesPresent), written by scipy.io.savemat.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["blob_mask", "photo_crops", "write_jpeg", "write_sbd_mat"]


def photo_crops(sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """RGB crops (H, W, 3) of scikit-image's CC0 photos, one per ``(H, W)`` in ``sizes``."""
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    out = []
    for i, (h, w) in enumerate(sizes):
        img = photos[i % len(photos)]
        y = (i * 7) % max(1, img.shape[0] - h)
        x = (i * 13) % max(1, img.shape[1] - w)
        out.append(np.ascontiguousarray(img[y : y + h, x : x + w, :3]))
    return out


def blob_mask(h: int, w: int, classes: list[int], outline: bool = True) -> np.ndarray:
    """Background 0 with one rectangle per entry of ``classes`` (non-zero class ids), each with
    a 255 outline of width 2 around it, as VOC draws its object boundaries."""
    mask = np.zeros((h, w), dtype=np.uint8)
    n = max(1, len(classes))
    for i, cls in enumerate(classes):
        x0, x1 = i * w // n + 3, (i + 1) * w // n - 3
        y0, y1 = h // 4, 3 * h // 4
        if outline:
            mask[max(0, y0 - 2) : y1 + 2, max(0, x0 - 2) : x1 + 2] = 255
        mask[y0:y1, x0:x1] = cls
    return mask


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="JPEG", quality=quality)


def write_sbd_mat(path: Path, seg: np.ndarray, n_classes: int = 20, compress: bool = True) -> None:
    """An SBD class file: ``GTcls`` 1x1 struct with Segmentation (uint8), Boundaries (a cell
    of ``n_classes`` sparse boundary maps) and CategoriesPresent (the present class ids)."""
    import scipy.io
    import scipy.sparse

    seg = np.asarray(seg, dtype=np.uint8)
    edges = np.zeros_like(seg, dtype=bool)
    edges[:-1] |= seg[:-1] != seg[1:]
    edges[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    boundaries = np.empty((n_classes, 1), dtype=object)
    for c in range(n_classes):
        boundaries[c, 0] = scipy.sparse.csc_matrix(edges & (seg == c + 1))
    present = np.array([[c] for c in np.unique(seg) if 0 < c < 255], dtype=np.uint8)
    gt = {"Segmentation": seg, "Boundaries": boundaries, "CategoriesPresent": present}
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"GTcls": gt}, do_compression=compress)

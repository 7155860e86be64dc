"""Segmentation fixtures on real files, for any test: ``from seg_fixtures import ...``.

- :func:`photo_crops`: JPEG-ready RGB crops of scikit-image's CC0 photos, of odd sizes.
- :func:`blob_mask`: a mask of class blobs with VOC's 255 outlines around each object.
- :func:`write_sbd_mat`: an SBD ``cls/*.mat`` file (``GTcls`` struct: Segmentation,
  Boundaries as a cell of sparse matrices, CategoriesPresent), written by scipy.io.savemat.
- :func:`write_voc_tree`: VOC2012's and SBD's tar layouts (``voc`` adapter).
- :func:`write_segfolder`: a user's segmentation folder (``segfolder`` adapter).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "VOC_SIZES",
    "blob_mask",
    "photo_crops",
    "write_jpeg",
    "write_sbd_mat",
    "write_segfolder",
    "write_voc_tree",
]


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


def png_declaring(width: int, height: int) -> bytes:
    """A real 1x1 grey PNG whose IHDR is rewritten to declare ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, chunk length + type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


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


# --- dataset trees ----------------------------------------------------------------------

VOC_SIZES = [(45, 61), (53, 38), (40, 70), (61, 49), (37, 52), (58, 66)]  # odd on purpose


def _classes_of(i: int, n_classes: int = 21) -> list[int]:
    """One or two foreground classes for the i-th image (deterministic, all in 1..20)."""
    first = 1 + (i * 7) % (n_classes - 1)
    return [first] if i % 3 else [first, 1 + (first + 4) % (n_classes - 1)]


def write_voc_tree(
    root: Path,
    train: list[str],
    val: list[str],
    *,
    sbd_train: list[str] | None = None,
    sbd_val: list[str] | None = None,
    voc_images_for_sbd: bool = False,
) -> dict[str, np.ndarray]:
    """VOC2012's tar layout under ``root/VOCdevkit/VOC2012`` (JPEG images, palette PNG masks
    with 255 outlines, ImageSets/Segmentation lists) and, when ``sbd_train`` is given, SBD's
    ``root/benchmark_RELEASE/dataset`` (img/*.jpg, cls/*.mat without outlines, train.txt,
    val.txt). Returns every mask written, by "voc/<id>" and "sbd/<id>"."""
    from latentcache.datasets.masks import write_palette_mask

    voc = root / "VOCdevkit" / "VOC2012"
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    sbd_ids = list(dict.fromkeys((sbd_train or []) + (sbd_val or [])))
    everything = list(dict.fromkeys(train + val + sbd_ids))
    sizes = VOC_SIZES * (len(everything) // len(VOC_SIZES) + 1)
    crops = dict(zip(everything, photo_crops(sizes[: len(everything)]), strict=True))
    masks: dict[str, np.ndarray] = {}
    for i, image_id in enumerate(everything):
        h, w = crops[image_id].shape[:2]
        if image_id in train or image_id in val or voc_images_for_sbd:
            write_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", crops[image_id])
        if image_id in train or image_id in val:
            masks[f"voc/{image_id}"] = blob_mask(h, w, _classes_of(i))
            (voc / "SegmentationClass").mkdir(exist_ok=True)
            write_palette_mask(
                voc / "SegmentationClass" / f"{image_id}.png", masks[f"voc/{image_id}"]
            )
        if image_id in sbd_ids:
            sbd = root / "benchmark_RELEASE" / "dataset"
            write_jpeg(sbd / "img" / f"{image_id}.jpg", crops[image_id])
            masks[f"sbd/{image_id}"] = blob_mask(h, w, _classes_of(i + 1), outline=False)
            write_sbd_mat(sbd / "cls" / f"{image_id}.mat", masks[f"sbd/{image_id}"])
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in val))
    (lists / "trainval.txt").write_text("".join(f"{i}\n" for i in sorted(train + val)))
    if sbd_train is not None:
        sbd = root / "benchmark_RELEASE" / "dataset"
        (sbd / "train.txt").write_text("".join(f"{i}\n" for i in sbd_train))
        (sbd / "val.txt").write_text("".join(f"{i}\n" for i in sbd_val or []))
    return masks


def write_segfolder(
    root: Path,
    classes: list[str],
    splits: dict[str, int],
    *,
    layout: str = "splits",
    mask_format: str = "palette",
) -> dict[str, np.ndarray]:
    """A ``segfolder`` dataset: ``classes.txt`` and, per split, ``n`` JPEG photo crops with
    masks (palette or grey PNGs). ``layout="splits"``: ``<split>/{images,masks}/``;
    ``"lists"``: ``images/`` + ``masks/`` + ``<split>.txt``. Returns the masks by image path."""
    from latentcache.datasets.masks import write_palette_mask

    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    total = sum(splits.values())
    crops = photo_crops((VOC_SIZES * (total // len(VOC_SIZES) + 1))[:total])
    out: dict[str, np.ndarray] = {}
    i = 0
    for split, n in splits.items():
        names = []
        for _ in range(n):
            name = f"{split}_{i:03d}"
            base = root / split if layout == "splits" else root
            h, w = crops[i].shape[:2]
            mask = blob_mask(h, w, [1 + i % (len(classes) - 1)])
            write_jpeg(base / "images" / f"{name}.jpg", crops[i])
            (base / "masks").mkdir(parents=True, exist_ok=True)
            if mask_format == "palette":
                write_palette_mask(base / "masks" / f"{name}.png", mask)
            else:
                Image.fromarray(mask).save(base / "masks" / f"{name}.png")
            out[(base / "images" / f"{name}.jpg").relative_to(root).as_posix()] = mask
            names.append(name)
            i += 1
        if layout == "lists":
            (root / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return out

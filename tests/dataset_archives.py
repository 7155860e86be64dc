"""Small archives in each dataset's official layout, with real JPEG/PNG crops of scikit-image's
CC0 photos, for the download tests (served over HTTP on 127.0.0.1).

Each builder returns ``{filename: bytes}`` for the files the dataset's committed download spec
names; :func:`test_spec` turns the committed spec into one that fetches them from a test
server, with their own sha256 (the committed checksums are the real archives')."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import zipfile

import numpy as np

__all__ = ["BUILDERS", "make_tar", "make_zip", "test_spec", "jpeg"]


def _photo(i: int, size: int = 48) -> np.ndarray:
    from skimage import data

    img = (data.astronaut, data.coffee, data.chelsea)[i % 3]()
    y, x = (i * 37) % (img.shape[0] - size), (i * 53) % (img.shape[1] - size)
    return np.ascontiguousarray(img[y : y + size, x : x + size, :3])


def jpeg(i: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_photo(i)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png_mask(i: int) -> bytes:
    from PIL import Image

    mask = np.zeros((48, 48), np.uint8)
    mask[8:40, 8:40] = 1 + i % 20
    mask[8, 8:40] = 255  # VOC's ignore outline
    img = Image.fromarray(mask, mode="P")
    img.putpalette([v for c in range(256) for v in (c, 255 - c, (c * 7) % 256)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_tar(tree: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, payload in tree.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def make_zip(tree: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, payload in tree.items():
            zf.writestr(name, payload)
    return buf.getvalue()


def minc() -> dict[str, bytes]:
    classes = ["brick", "carpet", "ceramic"]
    tree = {"minc-2500/categories.txt": "\n".join(classes).encode() + b"\n"}
    splits: dict[str, list[str]] = {"train": [], "validate": [], "test": []}
    for c, cls in enumerate(classes):
        for i, split in enumerate(("train", "train", "validate", "test")):
            rel = f"images/{cls}/{cls}_{i + 1:06d}.jpg"
            tree[f"minc-2500/{rel}"] = jpeg(c * 4 + i)
            splits[split].append(rel)
    for split, lines in splits.items():
        tree[f"minc-2500/labels/{split}1.txt"] = "\n".join(lines).encode() + b"\n"
    tree["minc-2500/README.txt"] = b"MINC-2500 (test copy)\n"
    return {"minc-2500.tar.gz": make_tar(tree)}


def resisc45() -> dict[str, bytes]:
    names = ["airplane/airplane_001.jpg", "airplane/airplane_002.jpg"]
    names += ["wetland/wetland_012.jpg", "wetland/wetland_014.jpg"]
    tree = {f"NWPU-RESISC45/{n}": jpeg(i) for i, n in enumerate(names)}
    return {"NWPU-RESISC45.zip": make_zip(tree)}


def rsscn7() -> dict[str, bytes]:
    names = ["aGrass/a001.jpg", "aGrass/a002.jpg", "gParking/g021.jpg", "gParking/g024.jpg"]
    tree = {f"RSSCN7-master/{n}": jpeg(i + 5) for i, n in enumerate(names)}
    tree["RSSCN7-master/README.md"] = b"# RSSCN7\n"
    return {"RSSCN7-master.zip": make_zip(tree)}


def voc() -> dict[str, bytes]:
    import scipy.io

    ids = ["2007_000032", "2007_000039"]
    base = "VOCdevkit/VOC2012"
    tree = {f"{base}/JPEGImages/{i}.jpg": jpeg(n) for n, i in enumerate(ids)}
    tree.update({f"{base}/SegmentationClass/{i}.png": _png_mask(n) for n, i in enumerate(ids)})
    tree.update({f"{base}/Annotations/{i}.xml": b"<annotation/>" for i in ids})
    tree[f"{base}/ImageSets/Segmentation/train.txt"] = f"{ids[0]}\n".encode()
    tree[f"{base}/ImageSets/Segmentation/val.txt"] = f"{ids[1]}\n".encode()
    sbd = {"benchmark_RELEASE/dataset/img/2008_000002.jpg": jpeg(7)}
    mat = io.BytesIO()
    scipy.io.savemat(mat, {"GTcls": {"Segmentation": np.ones((48, 48), np.uint8)}})
    sbd["benchmark_RELEASE/dataset/cls/2008_000002.mat"] = mat.getvalue()
    sbd["benchmark_RELEASE/dataset/train.txt"] = b"2008_000002\n"
    sbd["benchmark_RELEASE/dataset/val.txt"] = b"2007_000039\n"
    return {
        "VOCtrainval_11-May-2012.tar": make_tar(tree, "w"),
        "benchmark.tgz": make_tar(sbd),
    }


def coco() -> dict[str, bytes]:
    def instances(image_id: int) -> bytes:
        return json.dumps({
            "images": [{"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 48, "height": 48}],
            "annotations": [{"id": 1, "image_id": image_id, "category_id": 18, "bbox": [4, 4, 20, 20],
                             "area": 400, "iscrowd": 0}],
            "categories": [{"id": 18, "name": "dog", "supercategory": "animal"}],
        }).encode()  # fmt: skip

    annotations = {
        "annotations/instances_train2017.json": instances(9),
        "annotations/instances_val2017.json": instances(139),
    }
    return {
        "annotations_trainval2017.zip": make_zip(annotations),
        "val2017.zip": make_zip({"val2017/000000000139.jpg": jpeg(3)}),
        "train2017.zip": make_zip({"train2017/000000000009.jpg": jpeg(4)}),
    }


BUILDERS = {"minc": minc, "resisc45": resisc45, "rsscn7": rsscn7, "voc": voc, "coco": coco}


def test_spec(name: str, files: dict[str, bytes], base: str):
    """The committed spec of ``name`` (its layout, formats, bounds) with URLs under ``base``
    and the sha256 of the test archives ``files`` in place of the real archives' checksums."""
    from latentcache.download.spec import Checksum, load_spec

    spec = load_spec(name)
    replaced = tuple(
        dataclasses.replace(
            f,
            urls=(f"{base}/{f.filename}",),
            checksum=Checksum("sha256", hashlib.sha256(files[f.filename]).hexdigest(), "test"),
        )
        for f in spec.files
    )
    return dataclasses.replace(spec, files=replaced)


test_spec.__test__ = False  # not a pytest test

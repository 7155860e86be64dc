"""Pascal VOC detection (Everingham et al. 2010): VOC2007 + VOC2012 trainval for training,
VOC2007 test for testing, 20 classes, boxes with *difficult* flags::

    <root>/                               (or <root>/VOCdevkit/)
      VOC2007/JPEGImages/<id>.jpg
      VOC2007/Annotations/<id>.xml        size, objects: name, difficult, bndbox (1-based)
      VOC2007/ImageSets/Main/{trainval,test}.txt
      VOC2012/...ImageSets/Main/trainval.txt
                 │
                 ▼
    index(root) ──► DatasetIndex(task="detection"): train 16,551 (5,011 + 11,540) / test 4,952
                    Sample(key "VOC2007/000005", path "VOC2007/JPEGImages/000005.jpg",
                           label -1, target "VOC2007/Annotations/000005.xml")

The index lists the ImageSets only; the XML is read (and checked) when a sample is encoded
(:func:`read_voc_xml`). VOC names its classes without ids: category id k (1..20) is the k-th
name of :data:`VOC_CLASSES`, the label a VOC segmentation mask gives it. VOC boxes are 1-based
inclusive pixel indices: ``(xmin - 1, ymin - 1, xmax, ymax)`` is the box in pixel
coordinates. A missing year or split is a warning (the counts differ from the official ones);
nothing found at all is an error.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

from latentcache.datasets.base import DatasetIndex, Sample, register_dataset
from latentcache.datasets.boxes import RawBoxes, register_box_reader
from latentcache.datasets.counts import warn_if_counts_differ
from latentcache.errors import DatasetNotFoundError, SampleError

__all__ = ["VOC_CLASSES", "VOC_SETS", "DOWNLOAD_URL", "index", "read_voc_xml"]

logger = logging.getLogger(__name__)

DOWNLOAD_URL = "http://host.robots.ox.ac.uk/pascal/VOC/"
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
# split -> (year, image set) pairs
VOC_SETS = {"train": (("2007", "trainval"), ("2012", "trainval")), "test": (("2007", "test"),)}
MAX_XML_BYTES = 1 << 20  # the largest VOC annotation is a few kB


def _find_root(root: Path) -> Path:
    for base in (root, root / "VOCdevkit"):
        if any((base / f"VOC{y}").is_dir() for y in ("2007", "2012")):
            return base
    raise DatasetNotFoundError(
        f"voc-det: no VOC2007/ or VOC2012/ folder in {root} or {root / 'VOCdevkit'}. Download "
        f"the VOC2007 trainval and test and VOC2012 trainval tars from {DOWNLOAD_URL}, unpack "
        "them into one folder and pass it with --data-root."
    )


def _image_set(base: Path, year: str, name: str) -> list[str]:
    path = base / f"VOC{year}" / "ImageSets" / "Main" / f"{name}.txt"
    if not path.is_file():
        logger.warning("voc-det: %s is missing; VOC%s %s left out", path, year, name)
        return []
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _samples(base: Path) -> list[Sample]:
    samples, missing = [], []
    for split, sets in VOC_SETS.items():
        for year, name in sets:
            for image_id in _image_set(base, year, name):
                s = Sample(
                    f"VOC{year}/{image_id}",
                    f"VOC{year}/JPEGImages/{image_id}.jpg",
                    -1,
                    split,
                    f"VOC{year}/Annotations/{image_id}.xml",
                )
                present = (base / s.path).is_file() and (base / s.target).is_file()
                (samples if present else missing).append(s)
    if missing:
        logger.warning(
            "voc-det: %d listed images or annotations are missing under %s (e.g. %s); "
            "indexing the %d present",
            len(missing), base, missing[0].path, len(samples),
        )  # fmt: skip
    return samples


@register_dataset(
    "voc-det",
    description="Pascal VOC detection: 20 classes; train = VOC2007+2012 trainval (16,551), "
    "test = VOC2007 test (4,952); boxes with difficult flags from the XML annotations",
    download_url=DOWNLOAD_URL,
)
def index(root: Path) -> DatasetIndex:
    """List VOC2007/VOC2012 detection under ``root`` (or ``root/VOCdevkit``)."""
    base = _find_root(Path(root))
    samples = _samples(base)
    if not samples:
        raise DatasetNotFoundError(
            f"voc-det: no image listed in VOC*/ImageSets/Main/{{trainval,test}}.txt exists "
            f"under {base} with its annotation"
        )
    found = {s: sum(x.split == s for x in samples) for s in VOC_SETS}
    warn_if_counts_differ("voc_det", "splits", found, logger)
    options = {"category_ids": list(range(1, len(VOC_CLASSES) + 1))}
    return DatasetIndex("voc-det", base, VOC_CLASSES, tuple(samples), options, task="detection")


# --- the annotation file ------------------------------------------------------------------


def _text(node: ET.Element, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise SampleError(f"{where}: <{tag}> is missing")
    return child.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> float:
    value = _text(node, tag, where)
    try:
        return float(value)
    except ValueError:
        raise SampleError(f"{where}: <{tag}> is {value!r}, not a number") from None


def _object(obj: ET.Element, i: int, name: str) -> tuple[list[float], int, bool]:
    where = f"{name} object {i}"
    cls = _text(obj, "name", where)
    if cls not in VOC_CLASSES:
        raise SampleError(f"{where} is a {cls!r}, not one of VOC's {len(VOC_CLASSES)} classes")
    box = obj.find("bndbox")
    if box is None:
        raise SampleError(f"{where}: <bndbox> is missing")
    x1, y1, x2, y2 = (_number(box, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
    difficult = obj.find("difficult")
    flag = difficult is not None and (difficult.text or "0").strip() not in ("0", "")
    return [x1 - 1.0, y1 - 1.0, x2, y2], VOC_CLASSES.index(cls) + 1, flag


@register_box_reader(".xml")
def read_voc_xml(path: Path, fragment: str = "") -> RawBoxes:
    """The boxes of one VOC annotation file (pixel xyxy, category ids 1..20, difficult)."""
    if path.stat().st_size > MAX_XML_BYTES:
        raise SampleError(f"{path.name} is larger than {MAX_XML_BYTES} bytes")
    try:
        tree = ET.fromstring(path.read_bytes())
    except ET.ParseError as exc:
        raise SampleError(f"{path.name} is not valid XML: {exc}") from None
    size = tree.find("size")
    declared = None
    if size is not None:
        declared = (int(_number(size, "height", path.name)), int(_number(size, "width", path.name)))
    rows = [_object(obj, i, path.name) for i, obj in enumerate(tree.findall("object"))]
    return RawBoxes.from_lists(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        declared,
        range(1, len(VOC_CLASSES) + 1),
    )

"""Write the committed dataset manifests under ``data_manifests/`` (deterministic).

::

    class lists + file naming (below) ──► data_manifests/minc2500/{classes.txt,counts.json}
                                          data_manifests/resisc45/{classes.txt,counts.json,splits.json}
                                          data_manifests/rsscn7/{classes.txt,counts.json,splits.json}
                                          data_manifests/voc2012/{classes.txt,counts.json}
    official detection counts         ──► data_manifests/coco/counts.json
                                          data_manifests/voc_det/{classes.txt,counts.json}

RESISC-45 and RSSCN7 have no official split. Each class's files are ranked by
``sha256(f"{SEED}:{relpath}")`` and cut at 80 % / 10 % / 10 % (train / validate / test); each
list is then sorted by path. The ranking is a seeded permutation that depends on nothing but
the file names: no random-number generator, so every Python and numpy version gives the same
split. Re-running this script rewrites the files byte for byte::

    python scripts/make_splits.py            # writes data_manifests/
    python scripts/make_splits.py --check    # exits 1 if the committed files differ
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

__all__ = ["SEED", "RATIOS", "build_manifests", "write_manifests", "main"]

logger = logging.getLogger("make_splits")

SEED = 2024
RATIOS = {"train": 0.8, "validate": 0.1, "test": 0.1}
SPLITS = ("train", "validate", "test")
OUT = Path(__file__).resolve().parents[1] / "data_manifests"

MINC_CLASSES = (
    "brick carpet ceramic fabric foliage food glass hair leather metal mirror other painted "
    "paper plastic polishedstone skin sky stone tile wallpaper water wood"
).split()
RESISC45_CLASSES = (
    "airplane airport baseball_diamond basketball_court beach bridge chaparral church "
    "circular_farmland cloud commercial_area dense_residential desert forest freeway "
    "golf_course ground_track_field harbor industrial_area intersection island lake meadow "
    "medium_residential mobile_home_park mountain overpass palace parking_lot railway "
    "railway_station rectangular_farmland river roundabout runway sea_ice ship snowberg "
    "sparse_residential stadium storage_tank tennis_court terrace thermal_power_station wetland"
).split()
RSSCN7_CLASSES = "aGrass bField cIndustry dRiverLake eForest fResident gParking".split()
# PASCAL VOC 2012 (VOCdevkit's VOCinit.m order; label 0 = background; 255 = ignore)
VOC_CLASSES = (
    "background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse "
    "motorbike person pottedplant sheep sofa train tvmonitor"
).split()

NO_CHECKSUM = (
    "the publisher records none; the archives `latentcache download` fetches, with the "
    "checksums libraries record for them and which, are in data_manifests/downloads/"
)


def _resisc45_files(cls: str) -> list[str]:
    return [f"{cls}/{cls}_{i:03d}.jpg" for i in range(1, 701)]


def _rsscn7_files(cls: str) -> list[str]:
    return [f"{cls}/{cls[0]}{i:03d}.jpg" for i in range(1, 401)]


def _rank(path: str) -> str:
    return hashlib.sha256(f"{SEED}:{path}".encode()).hexdigest()


def split_class(files: list[str]) -> dict[str, list[str]]:
    """Cut one class's files into train / validate / test by their seeded rank."""
    ranked = sorted(files, key=_rank)
    n_train = round(RATIOS["train"] * len(files))
    n_val = round(RATIOS["validate"] * len(files))
    cuts = {
        "train": ranked[:n_train],
        "validate": ranked[n_train : n_train + n_val],
        "test": ranked[n_train + n_val :],
    }
    return {split: sorted(paths) for split, paths in cuts.items()}


def _seeded_split(classes: list[str], files_of) -> dict:
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    for cls in classes:
        for split, paths in split_class(files_of(cls)).items():
            splits[split].extend(paths)
    return {
        "method": "per class: rank files by sha256(f'{seed}:{relpath}'), cut at the ratios "
        "(train first), sort each list by path; made by scripts/make_splits.py",
        "ratios": RATIOS,
        "seed": SEED,
        "splits": {s: sorted(paths) for s, paths in splits.items()},
    }


def _counts(name: str, classes: list[str], per_class: dict[str, int], extra: dict) -> dict:
    return {
        "classes": len(classes),
        "dataset": name,
        "per_class": per_class,
        "splits": {s: n * len(classes) for s, n in per_class.items()},
        "total": sum(per_class.values()) * len(classes),
        **extra,
    }


def _minc() -> dict[str, str]:
    counts = _counts(
        "minc",
        MINC_CLASSES,
        {"train": 2125, "validate": 125, "test": 250},
        {
            "image_size": [362, 362],
            "name": "MINC-2500",
            "split": "official: labels/{train,validate,test}{1..5}.txt; the counts hold "
            "for each of the 5 split sets (Bell et al. 2015; Gupta et al. 2024 use split set 1)",
            "split_sets": [1, 2, 3, 4, 5],
            "source": {
                "archive": "minc-2500.tar.gz",
                "sha256": None,
                "sha256_note": NO_CHECKSUM,
                "url": "http://opensurfaces.cs.cornell.edu/static/minc/minc-2500.tar.gz",
            },
        },
    )
    return {"classes.txt": _lines(MINC_CLASSES), "counts.json": _json(counts)}


def _listed(name: str, title: str, classes, files_of, size: int, source: dict) -> dict[str, str]:
    splits = _seeded_split(classes, files_of)
    per_class = {s: len(split_class(files_of(classes[0]))[s]) for s in SPLITS}
    extra = {
        "image_size": [size, size],
        "name": title,
        "split": f"seeded, committed: data_manifests/{name}/splits.json",
        "source": source,
    }
    return {
        "classes.txt": _lines(classes),
        "counts.json": _json(_counts(name, classes, per_class, extra)),
        "splits.json": _json(splits, indent=1),
    }


def _voc() -> dict[str, str]:
    counts = {
        "classes": len(VOC_CLASSES),
        "dataset": "voc",
        "ignore_index": 255,
        "name": "PASCAL VOC 2012 segmentation + SBD (Hariharan et al. 2011)",
        "sbd_splits": {"train": 8498, "val": 2857},
        "split": "official: VOC2012 ImageSets/Segmentation/{train,val}.txt; train_aug = "
        "(SBD train.txt + val.txt + VOC2012 train) - VOC2012 val, VOC masks first",
        "splits": {"train": 1464, "train_aug": 10582, "trainval": 2913, "val": 1449},
        "source": {
            "sbd": {
                "archive": "benchmark.tgz",
                "sha256": None,
                "sha256_note": NO_CHECKSUM,
                "url": "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
                "semantic_contours/benchmark.tgz",
            },
            "voc2012": {
                "archive": "VOCtrainval_11-May-2012.tar",
                "sha256": None,
                "sha256_note": NO_CHECKSUM,
                "url": "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            },
        },
    }
    return {"classes.txt": _lines(VOC_CLASSES), "counts.json": _json(counts)}


def build_manifests() -> dict[str, str]:
    """Every manifest file as ``{relative path: text}``."""
    files = {f"minc2500/{k}": v for k, v in _minc().items()}
    files.update({f"voc2012/{k}": v for k, v in _voc().items()})
    resisc45 = _listed(
        "resisc45",
        "NWPU-RESISC45",
        RESISC45_CLASSES,
        _resisc45_files,
        256,
        {
            "archive": "NWPU-RESISC45.rar",
            "page": "http://www.escience.cn/people/JunweiHan/NWPU-RESISC45.html",
            "sha256": None,
            "sha256_note": NO_CHECKSUM,
            "url": "https://1drv.ms/u/s!AmgKYzARBl5ca3HNaHIlzp_IXjs",
        },
    )
    rsscn7 = _listed(
        "rsscn7",
        "RSSCN7",
        RSSCN7_CLASSES,
        _rsscn7_files,
        400,
        {
            "archive": None,
            "sha256": None,
            "sha256_note": "a git repository, not an archive, with no checksum recorded anywhere; "
            "see data_manifests/downloads/rsscn7.json",
            "url": "https://github.com/palewithout/RSSCN7",
        },
    )
    files.update({f"resisc45/{k}": v for k, v in resisc45.items()})
    files.update({f"rsscn7/{k}": v for k, v in rsscn7.items()})
    files.update(_detection())
    return files


def _detection() -> dict[str, str]:
    """Official image and box counts of the detection datasets (warned about when an index
    differs: latentcache/datasets/counts.py)."""
    coco = {
        "annotations": {"train": 860001, "validate": 36781},
        "categories": {"all": 80},
        "dataset": "coco",
        "images_without_annotations": {"train": 1021, "validate": 48},
        "name": "COCO-2017 detection (instances)",
        "source": {
            "sha256": None,
            "sha256_note": NO_CHECKSUM,
            "url": "https://cocodataset.org/#download",
        },
        "split": "official: train2017 -> train, val2017 -> validate",
        "splits": {"train": 118287, "validate": 5000},
    }
    voc = {
        "categories": {"all": 20},
        "dataset": "voc-det",
        "name": "Pascal VOC detection",
        "objects": {"train": 40058, "test": 12032},
        "source": {
            "sha256": None,
            "sha256_note": NO_CHECKSUM,
            "url": "http://host.robots.ox.ac.uk/pascal/VOC/",
        },
        "split": "official: train = VOC2007 trainval (5,011) + VOC2012 trainval (11,540); "
        "test = VOC2007 test",
        "splits": {"train": 16551, "test": 4952},
    }
    return {
        "coco/counts.json": _json(coco),
        "voc_det/classes.txt": _lines(VOC_CLASSES[1:]),  # no background: id k = line k
        "voc_det/counts.json": _json(voc),
    }


def _lines(items) -> str:
    return "".join(f"{item}\n" for item in items)


def _json(obj: dict, indent: int = 2) -> str:
    return json.dumps(obj, indent=indent, sort_keys=True) + "\n"


def write_manifests(out: Path = OUT) -> list[Path]:
    """Write every manifest file under ``out``; returns the paths written."""
    written = []
    for rel, text in build_manifests().items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def check_manifests(out: Path = OUT) -> list[str]:
    """Relative paths whose committed text differs from what this script makes."""
    return [
        rel
        for rel, text in build_manifests().items()
        if not (out / rel).is_file() or (out / rel).read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (data_manifests/)")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        stale = check_manifests(args.out)
        for rel in stale:
            logger.error("differs: %s", args.out / rel)
        return 1 if stale else 0
    for path in write_manifests(args.out):
        logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

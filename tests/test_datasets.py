"""Dataset adapters on tiny trees of real image files, and the committed data_manifests."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from latentcache.datasets import DATASETS, build_index, get_dataset
from latentcache.datasets.imagefolder import read_split_manifest
from latentcache.errors import ConfigError, DatasetNotFoundError

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "data_manifests"


def write_image(path: Path, color: tuple[int, int, int] = (200, 30, 60)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new("RGB", (8, 6), color).save(path, format=fmt)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def assert_keys_ok(index) -> None:
    keys = [s.key for s in index.samples]
    assert len(set(keys)) == len(keys)
    for s in index.samples:
        assert "." not in s.key
        assert Path(s.path).stem.replace(".", "_") in s.key
        assert s.split in {"train", "validate", "test"}
        assert (index.root / s.path).is_file()


# --- registry and missing roots ---------------------------------------------------------


def test_registry_lists_the_adapters():
    get_dataset("imagefolder")
    assert {"imagefolder", "minc", "resisc45", "rsscn7"} <= set(DATASETS)


def test_unknown_dataset_names_the_valid_ones():
    with pytest.raises(ConfigError, match="Available:.*resisc45"):
        get_dataset("resisc46")


@pytest.mark.parametrize("name", ["minc", "resisc45", "rsscn7", "imagefolder"])
def test_missing_root_message(name, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        build_index(name, missing)
    msg = str(err.value)
    assert str(missing) in msg and "--data-root" in msg
    url = get_dataset(name).download_url
    if url:
        assert url in msg


# --- imagefolder -------------------------------------------------------------------------


def test_imagefolder_flat(tmp_path, caplog):
    write_image(tmp_path / "dog" / "d1.jpg")
    write_image(tmp_path / "cat" / "c1.png")
    write_image(tmp_path / "cat" / "c2.JPG")
    write_image(tmp_path / "cat" / "sub" / "c3.jpeg")
    write_text(tmp_path / "cat" / "broken.jpg", "not an image")  # indexed: encode records it
    write_text(tmp_path / "cat" / "notes.txt", "ignored")
    write_image(tmp_path / "cat" / ".hidden.jpg")
    write_image(tmp_path / ".cache" / "x.jpg")
    with caplog.at_level(logging.INFO):
        index = build_index("imagefolder", tmp_path)
    assert index.classes == ("cat", "dog")
    assert [s.path for s in index.samples] == [
        "cat/broken.jpg",
        "cat/c1.png",
        "cat/c2.JPG",
        "cat/sub/c3.jpeg",
        "dog/d1.jpg",
    ]
    assert {s.split for s in index.samples} == {"train"}
    assert [s.label for s in index.samples] == [0, 0, 0, 0, 1]
    assert "ignored 1 non-image" in caplog.text
    assert_keys_ok(index)


def test_imagefolder_split_layout(tmp_path):
    write_image(tmp_path / "train" / "cat" / "a.jpg")
    write_image(tmp_path / "train" / "dog" / "a.jpg")
    write_image(tmp_path / "val" / "dog" / "b.jpg")
    write_image(tmp_path / "test" / "bird" / "a.jpg")
    index = build_index("imagefolder", tmp_path)
    assert index.classes == ("bird", "cat", "dog")
    assert index.split_names == ["train", "validate", "test"]
    assert [(s.split, s.label) for s in index.samples] == [
        ("train", 1),
        ("train", 2),
        ("validate", 2),
        ("test", 0),
    ]
    assert index.split("validate")[0].path == "val/dog/b.jpg"
    assert_keys_ok(index)


def test_imagefolder_same_stem_two_extensions(tmp_path):
    write_image(tmp_path / "cat" / "a.jpg")
    write_image(tmp_path / "cat" / "a.png")
    write_image(tmp_path / "cat" / "b.v2.jpg")
    index = build_index("imagefolder", tmp_path)
    assert len(index.samples) == 3
    assert_keys_ok(index)


@pytest.mark.parametrize(
    "files, match",
    [
        ([], "no class folders"),
        (["loose.jpg"], "no class folders"),
        (["cat/notes.txt"], "no image files"),
    ],
)
def test_imagefolder_empty(tmp_path, files, match):
    tmp_path.mkdir(exist_ok=True)
    for rel in files:
        write_text(tmp_path / rel, "x")
    with pytest.raises(DatasetNotFoundError, match=match):
        build_index("imagefolder", tmp_path)


def test_imagefolder_refuses_mixed_layout(tmp_path):
    write_image(tmp_path / "train" / "cat" / "a.jpg")
    write_image(tmp_path / "dog" / "b.jpg")
    with pytest.raises(ConfigError, match=r"mixes split folders \['train'\].*\['dog'\]"):
        build_index("imagefolder", tmp_path)


def test_index_sha256_is_stable_and_root_independent(tmp_path):
    for root in (tmp_path / "a", tmp_path / "b"):
        write_image(root / "cat" / "x.jpg")
        write_image(root / "dog" / "y.png")
    first = build_index("imagefolder", tmp_path / "a")
    assert first.sha256() == build_index("imagefolder", tmp_path / "a").sha256()
    assert first.sha256() == build_index("imagefolder", tmp_path / "b").sha256()
    write_image(tmp_path / "b" / "dog" / "z.png")
    assert first.sha256() != build_index("imagefolder", tmp_path / "b").sha256()


# --- MINC-2500 ---------------------------------------------------------------------------

MINC_CLASSES = ["brick", "carpet", "wood"]


def make_minc(base: Path, split_sets=(1, 2)) -> Path:
    write_text(base / "categories.txt", "".join(f"{c}\n" for c in MINC_CLASSES))
    for c in MINC_CLASSES:
        for i in range(1, 5):
            write_image(base / "images" / c / f"{c}_{i:06d}.jpg")
    for k in split_sets:
        # split set k: image k is the test image, image k+1 the validation image
        for split, pick in (("train", None), ("validate", k + 1), ("test", k)):
            lines = [
                f"images/{c}/{c}_{i:06d}.jpg"
                for c in MINC_CLASSES
                for i in range(1, 5)
                if (i == pick if pick else i not in (k, k + 1))
            ]
            write_text(base / "labels" / f"{split}{k}.txt", "\n".join(lines) + "\n")
    return base


def test_minc_split_sets(tmp_path):
    make_minc(tmp_path)
    one = build_index("minc", tmp_path)
    two = build_index("minc", tmp_path, split_set=2)
    assert one.classes == tuple(MINC_CLASSES)
    assert one.options == {"split_set": 1} and two.options == {"split_set": 2}
    assert [len(one.split(s)) for s in ("train", "validate", "test")] == [6, 3, 3]
    assert [s.path for s in one.split("test")][0] == "images/brick/brick_000001.jpg"
    assert [s.path for s in two.split("test")][0] == "images/brick/brick_000002.jpg"
    assert {s.key for s in one.samples} == {s.key for s in two.samples}
    assert "wood/wood_000004" in {s.key for s in one.samples}
    assert all(MINC_CLASSES[s.label] in s.path for s in one.samples)
    assert one.sha256() != two.sha256()
    assert_keys_ok(one)


def test_minc_parent_folder(tmp_path):
    make_minc(tmp_path / "minc-2500")
    index = build_index("minc", tmp_path)
    assert index.root == tmp_path / "minc-2500"
    assert len(index.samples) == 12


@pytest.mark.parametrize("bad", [0, 6, -1, True, "x", 1.5])
def test_minc_invalid_split_set(tmp_path, bad):
    make_minc(tmp_path)
    with pytest.raises(ConfigError, match=r"split_set .*between \(1, 5\)"):
        build_index("minc", tmp_path, split_set=bad)


@pytest.mark.parametrize(
    "remove, split_set", [("categories.txt", 1), ("labels/test2.txt", 2), ("labels/train3.txt", 3)]
)
def test_minc_missing_file_is_named(tmp_path, remove, split_set):
    make_minc(tmp_path)
    (tmp_path / remove).unlink(missing_ok=True)
    with pytest.raises(DatasetNotFoundError, match=remove.split("/")[-1]):
        build_index("minc", tmp_path, split_set=split_set)


def test_minc_missing_images_warn(tmp_path, caplog):
    make_minc(tmp_path)
    (tmp_path / "images" / "wood" / "wood_000004.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger="latentcache.datasets.minc"):
        index = build_index("minc", tmp_path)
    assert len(index.samples) == 11
    assert "1 of 12 files listed" in caplog.text


def test_minc_not_minc(tmp_path):
    write_image(tmp_path / "cat" / "a.jpg")
    with pytest.raises(DatasetNotFoundError, match="categories.txt") as err:
        build_index("minc", tmp_path)
    assert "minc-2500.tar.gz" in str(err.value)


# --- RESISC-45 and RSSCN7 (committed splits) ---------------------------------------------


def some_listed(name: str) -> dict[str, list[str]]:
    """Two train, one validate and one test file of the committed split, first classes."""
    _, manifest = read_split_manifest(name)
    splits = manifest["splits"]
    return {
        "train": splits["train"][:2],
        "validate": splits["validate"][-1:],
        "test": splits["test"][:1],
    }


@pytest.mark.parametrize(
    "name, wrapper, total",
    [("resisc45", "", 31500), ("resisc45", "NWPU-RESISC45", 31500), ("rsscn7", "", 2800)],
)
def test_listed_split_present_subset(tmp_path, caplog, name, wrapper, total):
    picked = some_listed(name)
    base = tmp_path / wrapper if wrapper else tmp_path
    for paths in picked.values():
        for rel in paths:
            write_image(base / rel)
    cls = picked["train"][0].split("/")[0]
    write_image(base / cls / "extra_0001.jpg")  # on disk, in no list
    with caplog.at_level(logging.WARNING, logger=f"latentcache.datasets.{name}"):
        index = build_index(name, tmp_path)
    assert index.root == base
    assert len(index.samples) == 4
    assert {s.split: [t.path for t in index.split(s.split)] for s in index.samples} == picked
    assert all(index.classes[s.label] == s.path.split("/")[0] for s in index.samples)
    assert f"{total - 4} of {total} files listed" in caplog.text
    assert "1 image files on disk are in no split list" in caplog.text
    assert f"{cls}/extra_0001.jpg" in caplog.text
    assert index.options["seed"] == read_split_manifest(name)[1]["seed"]
    assert_keys_ok(index)


@pytest.mark.parametrize("name", ["resisc45", "rsscn7"])
def test_listed_split_all_missing(tmp_path, name):
    classes, _ = read_split_manifest(name)
    write_image(tmp_path / classes[0] / "renamed.jpg")
    with pytest.raises(
        DatasetNotFoundError, match=f"none of the .* files listed in data_manifests/{name}"
    ):
        build_index(name, tmp_path)


@pytest.mark.parametrize("name", ["resisc45", "rsscn7"])
def test_listed_split_no_class_folders(tmp_path, name):
    write_image(tmp_path / "somethingelse" / "a.jpg")
    with pytest.raises(DatasetNotFoundError, match="class folders") as err:
        build_index(name, tmp_path)
    assert get_dataset(name).download_url in str(err.value)
    assert "--data-root" in str(err.value)


# --- committed manifests -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, n_classes, per_class, total",
    [("resisc45", 45, 700, 31500), ("rsscn7", 7, 400, 2800)],
)
def test_committed_split_is_consistent(name, n_classes, per_class, total):
    classes, manifest = read_split_manifest(name)
    counts = json.loads((MANIFESTS / name / "counts.json").read_text())
    splits = manifest["splits"]
    assert len(classes) == len(set(classes)) == counts["classes"] == n_classes
    assert classes == sorted(classes)
    everything = [p for paths in splits.values() for p in paths]
    assert len(everything) == len(set(everything)) == total == counts["total"]
    for split, paths in splits.items():
        assert len(paths) == counts["splits"][split]
        assert paths == sorted(paths)
        for cls in classes:
            n = sum(p.split("/")[0] == cls for p in paths)
            assert n == counts["per_class"][split]
    assert sum(counts["per_class"].values()) == per_class
    assert {p.split("/")[0] for p in everything} == set(classes)
    assert manifest["ratios"] == {"train": 0.8, "validate": 0.1, "test": 0.1}


def test_committed_minc_counts():
    counts = json.loads((MANIFESTS / "minc2500" / "counts.json").read_text())
    classes = (MANIFESTS / "minc2500" / "classes.txt").read_text().split()
    assert len(classes) == counts["classes"] == 23
    assert counts["per_class"] == {"train": 2125, "validate": 125, "test": 250}
    assert counts["splits"] == {"train": 48875, "validate": 2875, "test": 5750}
    assert counts["total"] == 23 * 2500


def test_make_splits_reproduces_the_committed_files(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_splits", REPO / "scripts" / "make_splits.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.write_manifests(tmp_path)
    assert written
    for path in written:
        rel = path.relative_to(tmp_path)
        assert path.read_bytes() == (MANIFESTS / rel).read_bytes(), rel
    assert module.check_manifests(MANIFESTS) == []

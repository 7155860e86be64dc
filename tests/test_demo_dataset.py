"""The demo dataset: generated offline, matches its committed index, splits share no pixel."""

from __future__ import annotations

import json
from itertools import product

import numpy as np
import pytest

from latentcache.datasets import build_index
from latentcache.datasets.demo import (
    BANDS,
    Patch,
    build_manifest,
    dump_manifest,
    manifest_path,
    pixels_sha256,
    plan_patches,
)
from latentcache.errors import DatasetNotFoundError


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(manifest_path().read_text())


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "demo"
    return build_index("demo", root)  # root missing: generated from scikit-image


def test_committed_index_is_what_the_code_builds(manifest):
    assert dump_manifest(build_manifest()) == manifest_path().read_text()
    assert manifest["classes"] == ["brick", "grass", "gravel"]


def test_splits_share_no_source_pixels(manifest):
    """Paint every patch's region into a per-(class, split) mask; masks must not intersect."""
    shape = {c: tuple(src["shape"]) for c, src in manifest["sources"].items()}
    covered = {(c, s): np.zeros(shape[c], bool) for c, s in product(shape, BANDS)}
    for p in manifest["patches"]:
        top, end = manifest["bands"][p["split"]]["rows"]
        assert top <= p["y"] and p["y"] + p["size"] <= end, p["key"]
        covered[p["cls"], p["split"]][p["y"] : p["y"] + p["size"], p["x"] : p["x"] + p["size"]] = 1
    for c in shape:
        for a, b in (("train", "test"), ("train", "validate"), ("validate", "test")):
            assert not (covered[c, a] & covered[c, b]).any(), (c, a, b)
        assert covered[c, "train"].any() and covered[c, "test"].any()
    counts = {s: sum(p["split"] == s for p in manifest["patches"]) for s in BANDS}
    assert counts == {"train": 195, "validate": 75, "test": 75}


def test_generated_files_match_the_index(generated, manifest):
    from PIL import Image

    by_key = {p["key"]: p for p in manifest["patches"]}
    assert len(generated.samples) == len(by_key) == 345
    for s in generated.samples:
        p = by_key[s.key]
        assert (s.path, s.label, s.split) == (p["path"], p["label"], p["split"])
        pixels = np.asarray(Image.open(generated.root / s.path))
        assert pixels.shape == (128, 128) and pixels_sha256(pixels) == p["pixels_sha256"]
    assert "." not in "".join(s.key for s in generated.samples)
    assert generated.split_names == ["train", "validate", "test"]


def test_patches_are_cut_from_the_recorded_region(generated):
    from PIL import Image
    from skimage import data

    s = generated.split("test")[3]
    p = next(Patch.from_dict(d) for d in build_manifest()["patches"] if d["key"] == s.key)
    region = data.gravel() if p.cls == "gravel" else getattr(data, p.cls)()
    region = region[p.y : p.y + p.size, p.x : p.x + p.size]
    assert np.array_equal(np.asarray(Image.open(generated.root / s.path)), region)


def test_existing_root_is_reused_and_a_damaged_one_named(generated):
    again = build_index("demo", generated.root)
    assert again.sha256() == generated.sha256()
    victim = generated.root / generated.samples[0].path
    data = victim.read_bytes()
    victim.unlink()
    try:
        with pytest.raises(DatasetNotFoundError, match="delete that folder"):
            build_index("demo", generated.root)
    finally:
        victim.write_bytes(data)


def test_plan_is_deterministic():
    assert plan_patches() == plan_patches()

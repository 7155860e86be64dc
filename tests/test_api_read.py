"""The public read path (``open_store(...).zarr_split(s).read``) goes through the loader's
shard reader: the same values and dtypes as zarr-python (stored or float sigma-hat), on every
scales representation, mixed sizes and holes; zarr-python reads what the shard reader declines;
missing or damaged files are refused in one line."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import zarr
from PIL import Image

from latentcache.config import EncodeConfig
from latentcache.errors import ConfigError, StoreCorruptError
from latentcache.pipeline.encode import run_encode
from latentcache.store import open_store
from latentcache.store.zarr_store import read_rows

warnings.filterwarnings("ignore", "Numcodecs codecs are not in the Zarr version 3")
_ROWS = ["key", "label", "bpp", "y_hat", "latent_shape", "image_size", "canvas_offset"]


def _encode(tmp_path, root, codec, name: str, scales_repr: str) -> object:
    out = tmp_path / name
    run_encode(
        EncodeConfig(
            dataset="imagefolder", data_root=str(root), out=str(out), workers=0, shard_size=2,
            formats=("zarr",), scales_repr=scales_repr,
        ),
        codec,
    )  # fmt: skip
    return open_store(out, codec)


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory, photo_images):
    """Three sizes, and a file that fails: a hole at the end of its shard."""
    root = tmp_path_factory.mktemp("photos")
    (root / "things").mkdir()
    for i, a in enumerate(photo_images):
        Image.fromarray(a).save(root / "things" / f"p{i}.png")
    (root / "things" / "broken.png").write_bytes(b"not an image")
    return root


def _ranges(n: int) -> list[tuple[int, int]]:
    return [(0, n), (1, n), (0, 1), (n - 1, n + 3), (2, 3)]


@pytest.mark.parametrize("scales_repr", ["index", "float16", "float32", "z_hat"])
def test_stored_and_float_reads_equal_zarr_python(tmp_path, photo_root, tiny_codec, scales_repr):
    store = _encode(tmp_path, photo_root, tiny_codec, "s", scales_repr)
    zs = store.zarr_split("train")
    stored = "z_hat" if scales_repr == "z_hat" else "scales_hat"
    assert zs.fast and len(zs) == 4 and store.manifest["failures"]
    for a, b in _ranges(len(zs)):
        want = read_rows(zs.group, a, b, [*_ROWS, stored, "z_shape"])
        got = zs.read(a, b, dtype="stored")
        assert set(got) == {*_ROWS, stored}
        for name in got:
            assert got[name].dtype == (np.int64 if name == "label" else want[name].dtype), name
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{a}:{b} {name}")
        floats = zs.read(a, b)
        assert floats["scales_hat"].dtype == np.float32 and "z_hat" not in floats
        np.testing.assert_array_equal(
            floats["scales_hat"], store.scales_to_float(want[stored], want["z_shape"])
        )
        np.testing.assert_array_equal(floats["y_hat"], got["y_hat"])


def test_a_layout_the_shard_reader_declines_is_read_by_zarr_python(texture_store, tmp_path):
    src = tmp_path / "store"
    shutil.copytree(texture_store.path, src, ignore=shutil.ignore_patterns(".latentcache"))
    group = zarr.open_group(src / "zarr", mode="a")["train"]
    y = group["y_hat"][:]
    del group["y_hat"]
    m, h, w = y.shape[1:]  # inner chunks of half a sample: not whole rows
    group.create_array("y_hat", shape=y.shape, chunks=(1, m, h // 2, w), shards=(4, m, h, w),
                       dtype="int16", fill_value=0)[:] = y  # fmt: skip
    zs = open_store(src).zarr_split("train")
    assert not zs.fast
    want = texture_store.zarr_split("train").read(0, len(zs), dtype="stored")
    got = zs.read(0, len(zs), dtype="stored")
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            "label/c/0",
            r"^zarr/train/label/c/0 chunk 0: crc32c checksum mismatch: the file is damaged$",
        ),
        (
            "y_hat/c/1/0/0/0",
            r"^zarr/train/y_hat/c/1/0/0/0: missing \(rows 0:12 of zarr/train/y_hat\)$",
        ),
    ],
    ids=["damaged-per-row-chunk", "missing-latent-shard"],
)
def test_damaged_or_missing_files_are_refused_in_one_line(texture_store, tmp_path, damage, message):
    src = tmp_path / "store"
    shutil.copytree(texture_store.path, src, ignore=shutil.ignore_patterns(".latentcache"))
    victim = src / "zarr" / "train" / damage
    if damage.startswith("label"):
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    else:
        victim.unlink()
    zs = open_store(src).zarr_split("train")
    with pytest.raises(StoreCorruptError, match=message):
        zs.read(0, len(zs), dtype="stored")


def test_an_unknown_read_dtype_is_refused_in_one_line(texture_store):
    with pytest.raises(
        ConfigError, match=r"^Invalid read dtype \"int8\", should be one of \('float', 'stored'\)$"
    ):
        texture_store.zarr_split("train").read(0, 2, dtype="int8")

"""store.shard_reader reads exactly what zarr-python reads: on real stores (both scales
arrays, mixed sizes, holes) and on arrays zarr-python writes with every codec the reader
takes; corrupt bytes fail with StoreCorruptError; unknown layouts are declined (None)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import zarr
from PIL import Image
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    ShardingCodec,
    TransposeCodec,
    ZstdCodec,
)

from latentcache.config import EncodeConfig
from latentcache.errors import StoreCorruptError
from latentcache.pipeline.encode import run_encode
from latentcache.store import open_store
from latentcache.store.shard_reader import read_layout, read_shard_rows, shard_layout

warnings.filterwarnings("ignore", "Numcodecs codecs are not in the Zarr version 3")


def _opener(root):
    return lambda rel: open(root / rel, "rb")


def _ranges(n: int) -> list[tuple[int, int]]:
    return [(0, n), (1, max(2, n - 1)), (n // 2, n // 2 + 1), (n - 1, n)]


def _check_equal(store, split: str, name: str) -> None:
    expected = store.zarr_root()[split][name]
    layout = read_layout(store.open_file, f"zarr/{split}/{name}")
    assert layout is not None and layout.chunk_rows == 1
    for a, b in _ranges(expected.shape[0]):
        got = read_shard_rows(store.open_file, f"zarr/{split}/{name}", layout, a, b)
        want = expected[a:b]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["y_hat", "scales_hat"])
def test_real_store_arrays_equal_zarr_python(texture_store, name) -> None:
    for split in texture_store.splits:
        _check_equal(texture_store, split, name)


def test_mixed_sizes_and_holes_equal_zarr_python(tmp_path, photo_images, tiny_codec) -> None:
    root = tmp_path / "photos" / "things"
    root.mkdir(parents=True)
    for i, a in enumerate(photo_images):  # three sizes
        Image.fromarray(a).save(root / f"p{i}.png")
    (root / "broken.png").write_bytes(b"not an image")  # fails: a hole in its shard
    run_encode(
        EncodeConfig(
            dataset="imagefolder", data_root=str(tmp_path / "photos"), out=str(tmp_path / "s"),
            workers=0, shard_size=3, formats=("zarr",),
        ),
        tiny_codec,
    )  # fmt: skip
    store = open_store(tmp_path / "s")
    assert store.manifest["failures"], "the broken file should leave a hole"
    keys = store.zarr_root()["train"]["key"][:]  # (R, K) uint8 UTF-8, a hole all zeros
    assert (keys == 0).all(axis=1).any()
    for name in ("y_hat", "scales_hat"):
        _check_equal(store, "train", name)


CODEC_CHAINS = {
    "blosc-bitshuffle": dict(compressors=BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")),
    "zstd+crc32c": dict(compressors=[ZstdCodec(level=3), Crc32cCodec()]),
    "gzip": dict(compressors=GzipCodec(level=5)),
    "none": dict(compressors=None),
    "transpose+crc32c": dict(filters=TransposeCodec(order=(0, 2, 3, 1)), compressors=Crc32cCodec()),
    "big-endian": dict(serializer=BytesCodec(endian="big"), compressors=ZstdCodec(level=1)),
}


@pytest.mark.parametrize("chain", sorted(CODEC_CHAINS))
@pytest.mark.parametrize("dtype", ["int16", "uint8", "float32"])
def test_arrays_written_by_zarr_python_read_back_equal(tmp_path, chain, dtype) -> None:
    rng = np.random.default_rng(0)
    data = (rng.normal(0, 20, (11, 3, 4, 5))).astype(dtype)
    arr = zarr.create_array(
        tmp_path / "a", shape=data.shape, chunks=(1, 3, 4, 5), shards=(4, 3, 4, 5), dtype=dtype,
        fill_value=7, **CODEC_CHAINS[chain],
    )  # fmt: skip
    arr[:9] = data[:9]  # shard 2 partly written: rows 9, 10 stay at the fill value
    arr[4:8] = 7  # shard 1 all fill: zarr-python writes no file for it
    expected = arr[:]
    layout = read_layout(_opener(tmp_path), "a")
    assert layout is not None
    for a, b in [(0, 11), (3, 10), (5, 6), (8, 11)]:
        got = read_shard_rows(_opener(tmp_path), "a", layout, a, b)
        np.testing.assert_array_equal(got, expected[a:b])
        assert got.dtype == expected.dtype


def test_index_at_the_start_and_v2_keys(tmp_path) -> None:
    data = np.arange(6 * 2 * 3, dtype="int16").reshape(6, 2, 3)
    arr = zarr.create_array(
        tmp_path / "b", shape=data.shape, chunks=(1, 2, 3), dtype="int16",
        serializer=ShardingCodec(chunk_shape=(1, 2, 3), index_location="start"),
        chunk_key_encoding={"name": "v2", "separator": "."}, compressors=None,
    )  # fmt: skip
    arr[:] = data
    meta = json.loads((tmp_path / "b" / "zarr.json").read_text())
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [6, 2, 3]  # sharded as one file
    layout = shard_layout(meta)
    if layout is None:  # zarr-python wrote chunks unsharded under this API: nothing to compare
        pytest.skip("zarr-python did not shard this array")
    layout = read_layout(_opener(tmp_path), "b")
    np.testing.assert_array_equal(read_shard_rows(_opener(tmp_path), "b", layout, 0, 6), arr[:])


def _crc_array(tmp_path):
    arr = zarr.create_array(
        tmp_path / "c", shape=(4, 8), chunks=(1, 8), shards=(4, 8), dtype="int32",
        compressors=[ZstdCodec(level=1), Crc32cCodec()],
    )  # fmt: skip
    arr[:] = np.arange(32, dtype="int32").reshape(4, 8)
    return tmp_path / "c" / "c" / "0" / "0"


def test_corrupt_chunk_index_or_truncation_raise(tmp_path) -> None:
    shard = _crc_array(tmp_path)
    good = shard.read_bytes()
    layout = read_layout(_opener(tmp_path), "c")
    for corrupt in (
        good[:5] + bytes([good[5] ^ 1]) + good[6:],  # chunk 0's data
        good[:-3] + bytes([good[-3] ^ 1]) + good[-2:],  # the index's crc32c
        good[:20] + good[-68:],  # chunks cut out: the index points past the end
    ):
        shard.write_bytes(corrupt)
        with pytest.raises(StoreCorruptError):
            read_shard_rows(_opener(tmp_path), "c", layout, 0, 4)


def test_unsupported_layouts_are_declined(tmp_path) -> None:
    arr = zarr.create_array(tmp_path / "d", shape=(4, 3), chunks=(2, 3), dtype="int16")
    assert read_layout(_opener(tmp_path), "d") is None  # not sharded
    meta = json.loads((tmp_path / "d" / "zarr.json").read_text())
    assert shard_layout({**meta, "zarr_format": 2}) is None
    assert arr.shape == (4, 3)

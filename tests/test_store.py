"""Writer -> reader round trips for both layouts, the manifest, scales representations, mixed sizes."""

from __future__ import annotations

import io
import json

import numcodecs
import numpy as np
import pytest
import webdataset as wds
import zarr
from PIL import Image

from latentcache.config import EncodeConfig
from latentcache.pipeline.encode import run_encode
from latentcache.store import open_store
from latentcache.store.manifest import read_manifest


def _zarr_samples(store):
    return {s["key"]: s for split in store.splits for s in store.zarr_split(split)}


def _wds_samples(store):
    out = {}
    for split in store.splits:
        for raw in wds.WebDataset(store.wds_shards(split), shardshuffle=False, empty_check=False):
            s = store.decode_wds_sample(raw)
            out[s["key"]] = s
    return out


def test_both_layouts_hold_the_same_values(texture_store):
    z, w = _zarr_samples(texture_store), _wds_samples(texture_store)
    assert set(z) == set(w) and len(z) == texture_store.manifest["totals"]["stored"] == 18
    for key in z:
        for name in ("y_hat", "scales_hat", "label", "bpp"):
            np.testing.assert_array_equal(z[key][name], w[key][name], err_msg=f"{key} {name}")


def test_bpp_equals_stored_bitstream_bytes(texture_store):
    zs = texture_store.zarr_split("train")
    rows = zs.read(0, len(zs), bitstreams=True)
    sizes = zs.group["image_size"][:]
    for i in range(len(rows["key"])):
        h, w = sizes[i]
        nbytes = len(rows["y_string"][i]) + len(rows["z_string"][i])
        assert rows["bpp"][i] == pytest.approx(8 * nbytes / (h * w), rel=1e-6)


def test_manifest_is_the_dataset_card(texture_store):
    m = read_manifest(texture_store.path)
    assert m["version"] == 2 and m["format"] == "latentcache-store"
    assert m["task"] == {"name": "classification"} and m["inputs"] == ["y_hat", "scales_hat"]
    assert all(sh["encoder"]["device"] == "cpu" and sh["encoder"]["torch"] for sh in m["shards"])
    assert m["codec"]["weights_sha256"] and m["codec"]["M"] == 24
    assert m["dataset"]["classes"] == ["brick", "grass", "gravel"]
    assert set(m["splits"]) == {"train", "test"}
    for s in m["splits"].values():
        assert s["indexed"] == s["stored"] + s["failed"]
        assert s["bpp_mean"] > 0 and s["latent_shape"] == [8, 8]
        assert s["stats"]["y_hat_std"] > 0
    assert {"compressai", "torch", "latentcache", "zarr"} <= set(m["versions"])
    for sh in m["shards"]:
        for files in sh["files"].values():
            assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in files)
    assert (texture_store.path / "manifest.json").read_text() == json.dumps(
        m, sort_keys=True, indent=1
    ) + "\n"


def test_plain_zarr_and_plain_webdataset_read_the_store(texture_store):
    """The README's snippets: no latentcache needed to read a store."""
    root = zarr.open_group(texture_store.path / "zarr", mode="r")
    g = root["train"]
    keys = g["key"][:]  # (R, K) uint8: UTF-8, zero-padded; holes are all zeros
    ok = keys.any(axis=1)
    names = [bytes(k).rstrip(b"\0").decode() for k in keys[ok]]
    table = np.array(json.loads((texture_store.path / "manifest.json").read_text())["scale_table"])
    scales = table[g["scales_hat"][:][ok]]  # uint8 index -> float scales_hat
    assert g["y_hat"].dtype == np.int16 and g["scales_hat"].dtype == np.uint8
    assert scales.shape == g["y_hat"][:][ok].shape
    i = 5  # row 5's bitstreams: its shard's bytes, sliced by the row's offsets
    data = g[f"bitstreams/{i // g.attrs['shard_size']:06d}"][:].tobytes()
    start, mid, stop = g["bitstream_offsets"][i]
    ours = texture_store.zarr_split("train").read(0, 100, bitstreams=True)
    assert names == list(ours["key"]) and names[i] == ours["key"][i]
    assert (data[start:mid], data[mid:stop]) == (ours["y_string"][i], ours["z_string"][i])
    urls = sorted(str(p) for p in (texture_store.path / "wds").glob("train-*.tar"))
    npy_zst = wds.handle_extension(
        "npy.zst", lambda b: np.load(io.BytesIO(numcodecs.Zstd().decode(b)))
    )  # the README's one-line handler
    sample = next(iter(wds.WebDataset(urls, shardshuffle=False).decode(npy_zst)))
    assert sample["y_hat.npy.zst"].dtype == np.int16 and int(sample["cls"]) >= 0
    assert sample["y_hat.npy.zst"].shape[0] == texture_store.num_channels
    assert sample["json"]["bpp"] > 0


@pytest.mark.parametrize("repr_", ["float16", "float32", "z_hat"])
def test_scales_representations_read_back_as_float(
    tmp_path, texture_root, tiny_codec, texture_store, repr_
):
    cfg = EncodeConfig(
        dataset="imagefolder",
        data_root=str(texture_root),
        out=str(tmp_path / repr_),
        shard_size=4,
        workers=0,
        scales_repr=repr_,
        formats=("zarr",),
    )
    run_encode(cfg, tiny_codec)
    store = open_store(tmp_path / repr_, codec=tiny_codec)
    got = store.zarr_split("train").read(0, 4)
    assert got["scales_hat"].dtype == np.float32
    index_store = texture_store.zarr_split("train").read(0, 4)  # the default: scale_table[index]
    np.testing.assert_array_equal(got["y_hat"], index_store["y_hat"])
    # exact scales lie in the scale-table bin the index store records: table[i-1] < s <= table[i]
    table = np.asarray(texture_store.manifest["scale_table"], dtype=np.float32)
    upper = index_store["scales_hat"]
    idx = np.searchsorted(table, upper)
    lower = np.where(idx > 0, table[np.maximum(idx - 1, 0)], -np.inf)
    s = np.maximum(got["scales_hat"], table[0])
    tol = 1e-3 if repr_ == "float16" else 0.0  # float16 keeps about 3 significant digits
    assert np.all(s <= upper * (1 + tol)) and np.all(s > lower * (1 - tol))
    assert len(np.unique(idx)) > 5  # the codec's scales really spread over the table


def test_z_hat_store_needs_the_codec_to_read(tmp_path, texture_root, tiny_codec):
    cfg = EncodeConfig(
        dataset="imagefolder",
        data_root=str(texture_root),
        out=str(tmp_path / "z"),
        shard_size=8,
        workers=0,
        scales_repr="z_hat",
        formats=("zarr",),
    )
    run_encode(cfg, tiny_codec)
    with pytest.raises(ValueError, match="codec="):
        open_store(tmp_path / "z").zarr_split("train").read(0, 2)


def test_mixed_image_sizes_are_padded_with_their_shape_recorded(tmp_path, photo_images, tiny_codec):
    root = tmp_path / "photos" / "things"
    root.mkdir(parents=True)
    for i, a in enumerate(photo_images):  # 200x232, 150x200, 128x192
        Image.fromarray(a).save(root / f"p{i}.png")
    run_encode(
        EncodeConfig(
            dataset="imagefolder",
            data_root=str(tmp_path / "photos"),
            out=str(tmp_path / "s"),
            workers=0,
        ),
        tiny_codec,
    )
    store = open_store(tmp_path / "s")
    info = store.split_info("train")
    assert info["latent_shape"] is None and info["zarr_latent_shape"] == [16, 16]
    zs = store.zarr_split("train")
    shapes = {s["key"]: tuple(s["y_hat"].shape[-2:]) for s in zs}
    assert shapes == {"things/p0": (16, 16), "things/p1": (12, 16), "things/p2": (8, 12)}
    wds_shapes = {k: tuple(s["y_hat"].shape[-2:]) for k, s in _wds_samples(store).items()}
    assert wds_shapes == shapes

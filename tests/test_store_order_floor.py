"""Seeded row order at encode, the one sigma-hat floor (the codec's ``lower_bound_scale``),
and z_hat stores of mixed image sizes (h_s on each row cropped to its ``z_shape``)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from latentcache.config import EncodeConfig
from latentcache.datasets import build_index
from latentcache.pipeline.encode import plan_shards, run_encode
from latentcache.store import open_store
from latentcache.train.augment import LatentStats, normalize_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _keys_in_row_order(store, split: str) -> list[str]:
    zs = store.zarr_split(split)
    return [str(k) for k in zs.read(0, len(zs))["key"]]


def _encode(tmp_path, root, codec, name: str, **kw):
    cfg = EncodeConfig(
        dataset="imagefolder", data_root=str(root), out=str(tmp_path / name), workers=0, **kw
    )
    run_encode(cfg, codec)
    return open_store(tmp_path / name, codec=codec)


def test_plan_is_a_seeded_permutation_and_index_order_is_kept_on_request(texture_root):
    index = build_index("imagefolder", str(texture_root))
    keys = [s.key for s in index.split("train")]
    assert keys == sorted(keys)  # the index lists rows sorted by class

    def planned(order, seed):
        return [
            s.key
            for t in plan_shards(index, 4, order, seed)
            if t.split == "train"
            for s in t.samples
        ]

    assert planned("index", 0) == keys
    shuffled = planned("shuffled", 0)
    assert sorted(shuffled) == keys and shuffled != keys
    assert planned("shuffled", 0) == shuffled  # same seed, same order
    assert planned("shuffled", 1) != shuffled


def test_store_rows_follow_the_recorded_order(tmp_path, texture_root, tiny_codec, texture_store):
    for split in texture_store.splits:
        keys = _keys_in_row_order(texture_store, split)
        order = texture_store.split_info(split)["row_order"]
        assert order["order"] == "shuffled" and order["seed"] == 0
        assert order["keys_sha256"] == hashlib.sha256("\n".join(keys).encode()).hexdigest()
    assert _keys_in_row_order(texture_store, "train") != sorted(
        _keys_in_row_order(texture_store, "train")
    )
    by_index = _encode(tmp_path, texture_root, tiny_codec, "idx", formats=("zarr",), order="index")
    keys = _keys_in_row_order(by_index, "train")
    assert keys == sorted(keys)
    assert by_index.split_info("train")["row_order"]["order"] == "index"
    # WebDataset samples are written in the same row order
    import webdataset as wds

    wds_keys = [
        r["__key__"]
        for r in wds.WebDataset(
            texture_store.wds_shards("train"), shardshuffle=False, empty_check=False
        )
    ]
    assert wds_keys == _keys_in_row_order(texture_store, "train")


def test_encode_cli_takes_the_order(tmp_path, texture_root, tiny_checkpoint):
    from click.testing import CliRunner

    from latentcache.cli.main import cli

    args = ["encode", "--dataset", "imagefolder", "--data-root", str(texture_root)]
    args += ["--checkpoint", str(tiny_checkpoint), "--workers", "0"]
    args += ["--format", "zarr", "--order-seed", "7", "--out", str(tmp_path / "s")]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert open_store(tmp_path / "s").split_info("train")["row_order"]["seed"] == 7
    bad = CliRunner().invoke(cli, [*args[:-2], "--order", "sorted", "--out", str(tmp_path / "t")])
    assert bad.exit_code != 0 and "sorted" in bad.output


def test_float32_store_is_floored_like_the_index_store(
    tmp_path, texture_root, tiny_codec, texture_store
):
    f32 = _encode(
        tmp_path, texture_root, tiny_codec, "f32", formats=("zarr",), scales_repr="float32"
    )
    assert f32.scale_floor == texture_store.scale_floor == pytest.approx(0.11)
    raw = f32.zarr_split("train").read(0, 6)["scales_hat"]
    assert (raw == 0).any()  # h_s's ReLU gives exact zeros: without the floor, log(0)
    idx = texture_store.zarr_split("train").read(0, 6)["scales_hat"]
    ours = []
    for store, scales in ((f32, raw), (texture_store, idx)):
        info = store.split_info("train")["stats"] | {"scales_floor": store.scale_floor}
        stats = LatentStats.from_dict(info)
        (x,) = normalize_inputs({"scales_hat": torch.from_numpy(scales)}, ["scales_hat"], stats)
        ours.append((x * stats.log_scales_std + stats.log_scales_mean).numpy())
        assert abs(float(x.mean())) < 1.0  # standardized by statistics of the same floor
    # log sigma-hat of both stores agrees to the width of one scale-table bin (ln 1.13)
    assert np.abs(ours[0] - ours[1]).max() <= 0.125


def test_z_hat_store_of_mixed_sizes_equals_h_s_on_each_sample_alone(
    tmp_path, photo_images, tiny_codec
):
    from latentcache.codec.latents import extract_latents

    root = tmp_path / "photos" / "things"
    root.mkdir(parents=True)
    for i, a in enumerate(photo_images):  # 200x232, 150x200, 128x192: padded in Zarr
        Image.fromarray(a).save(root / f"p{i}.png")
    store = _encode(tmp_path, tmp_path / "photos", tiny_codec, "z", scales_repr="z_hat")
    zs = store.zarr_split("train")
    rows = zs.read(0, len(zs), bitstreams=True)
    wds_scales = {}
    import webdataset as wds

    for raw in wds.WebDataset(store.wds_shards("train"), shardshuffle=False, empty_check=False):
        s = store.decode_wds_sample(raw)
        wds_scales[s["key"]] = s["scales_hat"]
    assert len(rows["key"]) == 3
    for i, sample in enumerate(zs):
        alone = extract_latents(
            tiny_codec.model, [rows["y_string"][i]], [rows["z_string"][i]], rows["z_shape"][i]
        )["scales_hat"][0].numpy()
        assert sample["scales_hat"].shape == alone.shape
        np.testing.assert_array_equal(sample["scales_hat"], alone, err_msg=sample["key"])
        np.testing.assert_array_equal(wds_scales[sample["key"]], alone, err_msg=sample["key"])


@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_z_hat_and_float32_stores_train_with_the_index_stores_normalisation(
    tmp_path, texture_root, tiny_codec, tiny_checkpoint, texture_store, fmt
):
    """The loader gives a z_hat store the scales h_s makes (with the store's own codec, checked
    by sha256): normalized exactly like the float32 store's, and within one scale-table bin of
    the index store's; training runs on it, and without the codec it says what to pass."""
    from click.testing import CliRunner

    from latentcache.cli.main import cli
    from latentcache.train.data import StreamSpec, build_loader

    stores = {
        "z_hat": _encode(tmp_path, texture_root, tiny_codec, "z", scales_repr="z_hat"),
        "float32": _encode(tmp_path, texture_root, tiny_codec, "f", scales_repr="float32"),
        "index": texture_store,
    }
    normalized = {}
    for name, store in stores.items():
        spec = StreamSpec(
            store=str(store.path), split="test", fmt=fmt, batch_size=64,
            codec_checkpoint=str(tiny_checkpoint) if name == "z_hat" else None,
        )  # fmt: skip
        (batch,) = list(build_loader(spec, workers=0, resize=None))
        stats = LatentStats.from_dict(
            store.split_info("train")["stats"] | {"scales_floor": store.scale_floor}
        )
        (x,) = normalize_inputs(batch, ["scales_hat"], stats)
        order = np.argsort(batch["key"])
        normalized[name] = (x * stats.log_scales_std + stats.log_scales_mean).numpy()[order]
    np.testing.assert_allclose(normalized["z_hat"], normalized["float32"], rtol=0, atol=1e-5)
    assert np.abs(normalized["z_hat"] - normalized["index"]).max() <= 0.125  # ln 1.13

    z = str(stores["z_hat"].path)
    args = ["train", z, "--format", fmt, "--epochs", "1", "--batch-size", "4", "--resize", "8"]
    args += ["--crop", "6", "--model", "cresnet39-dual", "--model-opt", "stem_width=8"]
    args += ["--pretrained", "off", "--out", str(tmp_path / "run")]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "--codec-checkpoint" in refused.output, refused.output
    trained = CliRunner().invoke(cli, [*args, "--codec-checkpoint", str(tiny_checkpoint)])
    assert trained.exit_code == 0, trained.output
    scored = CliRunner().invoke(cli, ["eval", str(tmp_path / "run"), z, "--json"])
    assert scored.exit_code == 0, scored.output  # the run remembers the codec's file

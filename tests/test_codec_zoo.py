"""Every CompressAI image architecture, stored bit-exact.

For each zoo architecture a small real model (CompressAI's own class, small N and M, seeded,
its last layers scaled so that the latents are not all zero, ``update(force=True)``) encodes
real photo crops into a real store (Zarr and WebDataset). Then, for every stored sample, stock
CompressAI ``decompress`` runs on the stored bitstream, with hooks that observe what it
computes: the y_hat it feeds ``g_s``, and (autoregressive codecs) the means and scales its
context model produced at each position. The store's latents must equal them exactly
(``torch.equal``), and its bpp must be ``eval_model``'s (bytes x 8 / unpadded pixels).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentcache.codec.spec import arch_kind, architectures

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCHS = (
    "bmshj2018-factorized",
    "bmshj2018-hyperprior",
    "mbt2018-mean",
    "mbt2018",
    "cheng2020-anchor",
    "cheng2020-attn",
)


def make_zoo_model(arch: str, n: int = 8, m: int = 12, seed: int = 0):
    """A small real model of ``arch``, its latents spread like a trained codec's."""
    from compressai.zoo.image import model_architectures

    torch.manual_seed(seed)
    cls = model_architectures[arch]
    model = cls(n) if arch.startswith("cheng2020") else cls(n, m)
    last = lambda seq: [m for m in seq if hasattr(m, "weight")][-1]  # noqa: E731
    gains = [(last(model.g_a), 30.0)]
    if hasattr(model, "h_s"):
        gains.append((last(model.h_s), 10.0))
    if hasattr(model, "entropy_parameters"):
        gains.append((last(model.entropy_parameters), 4.0))
    with torch.no_grad():
        for layer, gain in gains:
            layer.weight.mul_(gain)
            layer.bias.mul_(gain)
    model.update(force=True)
    return model.eval()


def write_photos(root, count: int = 3, size: int = 48):
    """``<root>/<class>/<i>.png``: crops of scikit-image's CC0 photos, two classes."""
    from PIL import Image
    from skimage import data

    photos = {"astronaut": data.astronaut(), "coffee": data.coffee()}
    for cls, img in photos.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            y, x = 40 + 37 * i, 60 + 23 * i
            Image.fromarray(img[y : y + size, x : x + size + 8 * i]).save(root / cls / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"))


def _stock_decode(model, kind, y_string, z_string, shape):
    """Stock ``decompress`` of one bitstream, observed: y_hat into g_s; means and scales."""
    seen: dict = {"params": []}
    hooks = [model.g_s.register_forward_pre_hook(lambda _m, i: seen.__setitem__("y", i[0]))]
    if kind == "autoregressive":
        hooks.append(
            model.entropy_parameters.register_forward_hook(
                lambda _m, _i, o: seen["params"].append(o.clone())
            )
        )
    strings = [[y_string]] if kind == "factorized" else [[y_string], [z_string]]
    try:
        with torch.no_grad():
            model.decompress(strings, tuple(int(v) for v in shape))
    finally:
        for h in hooks:
            h.remove()
    y = seen["y"]
    if kind == "autoregressive":
        h, w = y.shape[-2:]
        gp = torch.cat(seen["params"]).reshape(h, w, -1).permute(2, 0, 1)[None]
        seen["scales"], seen["means"] = gp.chunk(2, 1)
    elif kind != "factorized":
        with torch.no_grad():
            z_hat = model.entropy_bottleneck.decompress([z_string], tuple(int(v) for v in shape))
            params = model.h_s(z_hat)
        seen["scales"], seen["means"] = (
            params.chunk(2, 1) if kind == "mean-scale" else (params, None)
        )
    return seen


def test_every_zoo_image_architecture_is_accepted():
    assert set(ARCHS) <= set(architectures())
    assert architectures()["cheng2020-anchor"][1] == (128, 128)  # N = M, from compressai.zoo
    assert sorted(architectures()["cheng2020-attn"]) == [1, 2, 3, 4, 5, 6]
    assert [arch_kind(a) for a in ARCHS] == [
        "factorized", "hyperprior", "mean-scale", "autoregressive", "autoregressive",
        "autoregressive",
    ]  # fmt: skip


@pytest.mark.parametrize("arch", ARCHS)
def test_store_reads_back_what_stock_decompress_returns(arch, photo_root, tmp_path):
    from latentcache.codec.load import codec_from_model
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode
    from latentcache.store import open_store
    from latentcache.store.reader import decoded_y_hat

    model = make_zoo_model(arch)
    codec = codec_from_model(model)
    kind = arch_kind(arch)
    assert codec.spec.arch == arch and codec.kind == kind
    out = tmp_path / "store"
    run_encode(
        EncodeConfig(
            dataset="imagefolder", data_root=str(photo_root), out=str(out), shard_size=4,
            workers=0, scales_repr="float32",
        ),
        codec,
    )  # fmt: skip
    store = open_store(out)
    assert tuple(store.inputs) == codec.inputs and store.manifest["latents"]["kind"] == kind
    assert store.manifest["totals"]["stored"] == 6
    table = model.gaussian_conditional.scale_table if kind != "factorized" else None
    wds = {s["key"]: s for split in store.splits for s in store.wds_samples(split)}
    checked, nonzero = 0, 0
    for split in store.splits:
        zs = store.zarr_split(split)
        for start, stop in zs.blocks():
            rows = zs.read(start, stop, bitstreams=True)
            for i, key in enumerate(rows["key"]):
                row = {k: v[i] for k, v in rows.items()}
                h, w = (int(v) for v in row["latent_shape"])
                crop = {
                    k: row[k][..., :h, :w] for k in ("y_hat", "scales_hat", "means_hat") if k in row
                }
                ref = _stock_decode(model, kind, row["y_string"], row["z_string"], row["z_shape"])
                got = torch.from_numpy(decoded_y_hat(crop, store.manifest))[None]
                assert torch.equal(got, ref["y"]), key
                if kind != "factorized":
                    assert torch.equal(torch.from_numpy(crop["scales_hat"])[None], ref["scales"])
                if ref.get("means") is not None:
                    assert torch.equal(torch.from_numpy(crop["means_hat"])[None], ref["means"])
                else:
                    assert "means_hat" not in crop
                size = store.zarr_split(split).group["image_size"][start + i]
                nbytes = len(row["y_string"]) + len(row["z_string"])
                assert row["bpp"] == np.float32(nbytes * 8.0 / (int(size[0]) * int(size[1])))
                for name, a in crop.items():  # the WebDataset layout holds the same latents
                    assert np.array_equal(wds[key][name], a), (key, name)
                checked += 1
                nonzero += int(np.count_nonzero(crop["y_hat"]))
    assert checked == 6 and nonzero > 0
    if table is not None:
        assert store.scale_floor > 0
    from latentcache.store.verify import verify_store

    report = verify_store(store, redecode=True, codec=codec)
    assert report.ok and report.samples_redecoded == 12, report.problems


def _encode(arch, root, out, **kw):
    from latentcache.codec.load import codec_from_model
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode
    from latentcache.store import open_store

    config = EncodeConfig(
        dataset="imagefolder", data_root=str(root), out=str(out), shard_size=4, workers=0, **kw
    )
    run_encode(config, codec_from_model(make_zoo_model(arch)))
    return open_store(out)


@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "mbt2018-mean", "mbt2018"])
def test_store_of_each_kind_trains_and_evaluates(arch, photo_root, tmp_path):
    """A classifier on every latent the store has; a few steps, then evaluation."""
    from latentcache.train import TrainConfig, run_training
    from latentcache.train.evaluate import evaluate_run

    store = _encode(arch, photo_root, tmp_path / "store", formats=("zarr",))
    run_training(
        TrainConfig(
            store=str(store.path), out=str(tmp_path / "run"), progress=False, model="cresnet39",
            model_kwargs={"base_width": 4, "inputs": list(store.inputs)}, epochs=1,
            batch_size=2, resize=4, crop=4, eval_split="train",
        )
    )  # fmt: skip
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["inputs"] == list(store.inputs)
    result = evaluate_run(tmp_path / "run", store.path, split="train", write=False)
    assert 0.0 <= result["top1"] <= 1.0


@pytest.mark.parametrize(
    "inputs", [("y_hat",), ("y_hat", "scales_hat"), ("y_hat", "scales_hat", "means_hat")]
)
def test_dual_stem_takes_one_stem_per_store_input(inputs):
    from latentcache.train.models import create_classifier

    model = create_classifier("cresnet39-dual", 8, 3, inputs, pretrained=False, stem_width=4)
    assert model.inputs == inputs
    stems = [n for n, _ in model.named_children() if n.endswith("_stem")]
    assert len(stems) == len(inputs)
    with torch.no_grad():
        assert model.eval()(*[torch.randn(2, 8, 6, 6) for _ in inputs]).shape == (2, 3)


def test_a_model_needing_latents_the_store_lacks_is_refused(photo_root, tmp_path):
    from latentcache.errors import ConfigError
    from latentcache.train.models import create_classifier

    with pytest.raises(ConfigError, match=r"the store has only \['y_hat'\] \(no scales_hat\)"):
        create_classifier("cresnet39", 8, 2, ("y_hat",), inputs=("y_hat", "scales_hat"))


def test_z_hat_scales_are_refused_where_h_s_alone_does_not_give_them(photo_root, tmp_path):
    from latentcache.codec.spec import CodecSpec
    from latentcache.config import EncodeConfig
    from latentcache.errors import ConfigError

    with pytest.raises(ConfigError, match="mbt2018-mean .mean-scale. does not do"):
        EncodeConfig(
            dataset="imagefolder", data_root=str(photo_root), out=str(tmp_path / "s"),
            codec=CodecSpec(arch="mbt2018-mean", quality=1), scales_repr="z_hat",
        )  # fmt: skip


@pytest.mark.parametrize("arch", ARCHS)
def test_plain_state_dict_is_recognised(arch, tmp_path):
    from latentcache.codec.load import load_codec
    from latentcache.codec.spec import CodecSpec

    model = make_zoo_model(arch)
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    codec = load_codec(CodecSpec(source="checkpoint", checkpoint=str(path)))
    card = codec.identity()
    assert (card["arch"], card["kind"], card["N"], card["M"]) == (
        arch, arch_kind(arch), 8, 8 if arch.startswith("cheng") else 12
    )  # fmt: skip
    assert card["quality"] is None and card["quality_source"] == "unknown"


def test_state_dict_of_another_architecture_is_refused_in_one_line(tmp_path):
    from latentcache.codec.load import load_codec
    from latentcache.codec.spec import CodecSpec
    from latentcache.errors import CodecFileError

    path = tmp_path / "w.pth"
    torch.save(make_zoo_model("cheng2020-anchor").state_dict(), path)
    with pytest.raises(CodecFileError) as err:
        load_codec(CodecSpec(arch="mbt2018", source="checkpoint", checkpoint=str(path)))
    assert "\n" not in str(err.value) and "pass --arch cheng2020-anchor" in str(err.value)


@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "cheng2020-anchor"])
def test_codec_train_and_eval_take_every_architecture(arch, photo_root, tmp_path):
    """A few rate-distortion steps from scratch; the checkpoint loads as ``arch`` and its
    bitstreams round-trip through stock compress/decompress (codec eval's path)."""
    from latentcache.codec.evaluate import codec_roundtrip
    from latentcache.codec.load import load_codec
    from latentcache.codec.spec import CodecSpec
    from latentcache.codec.train import TrainConfig, list_image_files, run_codec_train

    out = tmp_path / "c.pt"
    config = TrainConfig(
        out=str(out), arch=arch, quality=1, N=8, M=8, crop=64, batch_size=2, steps=2,
        log_every=1,
    )  # fmt: skip
    files = list_image_files(photo_root)
    run_codec_train(config, files, photo_root, data_source={"t": 1})
    codec = load_codec(CodecSpec(source="checkpoint", checkpoint=str(out)))
    assert codec.spec.arch == arch and codec.widths == (8, 8)
    from skimage import data

    rgb = data.astronaut()[:64, :80]
    rec, nbytes = codec_roundtrip(codec.model, rgb)
    assert rec.shape == rgb.shape and nbytes > 0


def test_tensorstore_reads_the_new_arrays(photo_root, tmp_path):
    """means_hat (and a store without scales_hat) stay portable: tensorstore reads every array
    of a mean-scale and a factorized store as zarr-python does."""
    from test_zarr_portable import _tensorstore_arrays, _zarr_python_arrays

    for arch, has in (("mbt2018-mean", "means_hat"), ("bmshj2018-factorized", None)):
        out = tmp_path / arch
        _encode(arch, photo_root, out, formats=("zarr",))
        expect = _zarr_python_arrays(out)
        names = {p.split("/", 1)[1] for p in expect}
        assert (has in names) if has else not ({"scales_hat", "means_hat"} & names)
        assert _tensorstore_arrays(out) == expect


def test_hostile_means_hat_members_are_refused(photo_root, tmp_path):
    """A tar's means_hat of another dtype, another shape, or missing: one-line refusals."""
    from latentcache.store.wds_store import iter_raw_samples, npy_bytes

    store = _encode("mbt2018-mean", photo_root, tmp_path / "s", formats=("webdataset",))
    rel = next(iter(store.wds_entries(store.splits[0])))
    with store.open_file(rel) as f:
        raw = next(iter_raw_samples(f, store.wds_entries(store.splits[0])[rel]["bytes"]))
    good = store.decode_wds_sample(dict(raw))
    assert good["means_hat"].dtype == np.float32
    name = "means_hat.npy.zst"
    cases = {
        "float64": good["means_hat"].astype(np.float64),
        "shape": good["means_hat"][:, :-1],
    }
    for why, bad in cases.items():
        with pytest.raises(ValueError) as err:
            store.decode_wds_sample({**raw, name: npy_bytes(bad)})
        assert "means_hat" in str(err.value) and "\n" not in str(err.value), why
    with pytest.raises(ValueError, match=r"missing array members \['means_hat'\]"):
        store.decode_wds_sample({k: v for k, v in raw.items() if k != name})


@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "mbt2018-mean", "cheng2020-anchor"])
def test_finetune_refuses_other_architectures_in_one_line(arch):
    from latentcache.errors import ConfigError
    from latentcache.finetune.objective import check_architecture

    with pytest.raises(ConfigError) as err:
        check_architecture(make_zoo_model(arch))
    assert "finetune supports" in str(err.value) and "\n" not in str(err.value)

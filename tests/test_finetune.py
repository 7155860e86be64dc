"""Fine-tuning on real images with a real (tiny) codec saved as a latentcache checkpoint:
which parameters each mode changes, the saved codec's bitstreams, the classifier's codec
identity, resume, and the direction of the rate measured from real bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import checkpoint_spec, encode_with_tiny_checkpoint, make_tiny_model

from latentcache.codec.load import load_codec, save_codec_checkpoint
from latentcache.codec.spec import CodecSpec
from latentcache.errors import CodecMismatchError, ConfigError
from latentcache.finetune import FinetuneConfig, run_finetune
from latentcache.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CODEC_PARTS = ("g_a", "h_a", "h_s", "entropy_bottleneck")


@pytest.fixture(scope="module")
def parent(tmp_path_factory, texture_root, one_torch_thread):
    """The tiny codec as a checkpoint, its store, and a classifier trained on that store."""
    from latentcache.train import TrainConfig, run_training

    root = tmp_path_factory.mktemp("parent")
    ckpt, store = encode_with_tiny_checkpoint(root, texture_root)
    run = root / "classifier"
    run_training(
        TrainConfig(
            store=str(store), out=str(run), model="cresnet39", model_kwargs={"base_width": 4},
            epochs=2, batch_size=4, lr=0.02, resize=8, crop=6, progress=False,
        )
    )  # fmt: skip
    return {"checkpoint": ckpt, "store": store, "run": run, "data_root": texture_root}


def _config(parent, out, **kw) -> FinetuneConfig:
    base = dict(
        dataset="imagefolder", data_root=str(parent["data_root"]), out=str(out), mode="joint",
        classifier=str(parent["run"]), codec=checkpoint_spec(parent["checkpoint"]), beta=1.0, epochs=1,
        batch_size=4, max_batches=2, lr=1e-3, progress=False,
    )  # fmt: skip
    return FinetuneConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def joint(parent, tmp_path_factory):
    out = tmp_path_factory.mktemp("jft") / "run"
    return run_finetune(_config(parent, out)), out


def _codec_params(path: Path) -> dict[str, torch.Tensor]:
    model = load_codec(checkpoint_spec(path)).model
    return dict(model.named_parameters())


def _changed(before: dict, after: dict) -> set[str]:
    return {n for n in before if not torch.equal(before[n], after[n])}


def _classifier_state(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt")["model"]


@pytest.mark.parametrize(
    "mode, gamma, codec_parts, classifier_trains, bn_moves",
    [
        ("task", 0.0, (), True, True),
        ("codec", 0.0, CODEC_PARTS, False, False),
        ("codec", 1.0, (*CODEC_PARTS, "g_s"), False, False),
        (
            "joint",
            0.0,
            CODEC_PARTS,
            True,
            False,
        ),  # BatchNorm statistics fixed while the codec trains
    ],
)
def test_each_mode_changes_exactly_its_parameters(
    parent, tmp_path, mode, gamma, codec_parts, classifier_trains, bn_moves
) -> None:
    out = tmp_path / mode
    summary = run_finetune(_config(parent, out, mode=mode, gamma=gamma))
    before, after = _codec_params(parent["checkpoint"]), _codec_params(out / "codec.pt")
    changed = _changed(before, after)
    expected = {n for n in before if n.split(".")[0] in codec_parts}
    assert changed == expected  # every parameter of the trained parts moved, no other did
    old, new = _classifier_state(parent["run"]), _classifier_state(out)
    moved = _changed(old, new)  # parameters and BatchNorm running statistics
    stats = {n for n in old if "running_" in n or "num_batches" in n}
    assert bool(moved & stats) == bn_moves
    assert bool({n for n in old if n.endswith("conv1.weight")} & moved) == classifier_trains
    if not classifier_trains:
        assert moved == set()  # frozen in eval mode
    parent_sha = summary["parent_codec"]["weights_sha256"]
    assert (summary["codec"]["weights_sha256"] == parent_sha) == (mode == "task")


def test_saved_codec_records_lineage_and_stock_compressai_decodes_it(joint, photo_images):
    from compressai.models import ScaleHyperprior

    from latentcache.codec.latents import encode_batch, pad_image, true_bpp

    summary, out = joint
    payload = torch.load(out / "codec.pt", map_location="cpu", weights_only=True)
    assert payload["lineage"] == {
        "parent_weights_sha256": summary["parent_codec"]["weights_sha256"],
        "mode": "joint",
        "beta": 1.0,
        "gamma": 0.0,
        "epochs": 1,
    }
    codec = load_codec(checkpoint_spec(out / "codec.pt"))  # what `encode --checkpoint` loads
    assert (
        codec.weights_sha256
        == summary["codec"]["weights_sha256"]
        != payload["lineage"]["parent_weights_sha256"]
    )
    stock = ScaleHyperprior.from_state_dict(payload["state_dict"]).eval()  # plain CompressAI
    img = photo_images[2]
    x = pad_image(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
    (lat,) = encode_batch(codec.model, x, [img.shape[:2]])
    with torch.no_grad():
        z_hat = stock.entropy_bottleneck.decompress([lat.z_string], lat.z_shape)
        indexes = stock.gaussian_conditional.build_indexes(stock.h_s(z_hat))
        y_hat = stock.gaussian_conditional.decompress([lat.y_string], indexes, z_hat.dtype)
        full = stock.decompress([[lat.y_string], [lat.z_string]], lat.z_shape)
    np.testing.assert_array_equal(y_hat[0].numpy().astype(np.int16), lat.y_hat)
    assert full["x_hat"].shape[-2:] == x.shape[-2:]
    assert lat.bpp == true_bpp([lat.y_string, lat.z_string], *img.shape[:2])


def test_joint_classifier_refuses_the_old_store_and_reads_the_re_encoded_one(
    joint, parent, tmp_path
) -> None:
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode
    from latentcache.train import evaluate_run

    summary, out = joint
    with pytest.raises(CodecMismatchError) as info:
        evaluate_run(out, parent["store"], "test", write=False)
    message = str(info.value)
    assert summary["parent_codec"]["weights_sha256"][:12] in message
    assert summary["codec"]["weights_sha256"][:12] in message
    store = tmp_path / "re-encoded"
    run_encode(
        EncodeConfig(
            dataset="imagefolder", data_root=str(parent["data_root"]), out=str(store),
            codec=checkpoint_spec(out / "codec.pt"), shard_size=4, workers=0, formats=("zarr",),
        )
    )  # fmt: skip
    result = evaluate_run(out, store, "test", write=False)
    manifest = json.loads((store / "manifest.json").read_text())
    # the summary's figures are those of the re-encoded store: same bytes, same latents
    assert result["top1"] == pytest.approx(summary["finetuned"]["top1"])
    assert manifest["splits"]["test"]["bpp_mean"] == pytest.approx(
        summary["finetuned"]["bpp_true_mean"]
    )


def test_resume_continues_the_same_run(parent, tmp_path) -> None:
    run_finetune(_config(parent, tmp_path / "straight", epochs=2))
    run_finetune(_config(parent, tmp_path / "split", epochs=1))
    run_finetune(_config(parent, tmp_path / "split", epochs=2, resume=True))
    a, b = (_codec_params(tmp_path / d / "codec.pt") for d in ("straight", "split"))
    assert _changed(a, b) == set()
    assert _changed(*(_classifier_state(tmp_path / d) for d in ("straight", "split"))) == set()
    lines = {
        d: [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        for d in ("straight", "split")
    }
    keys = ("epoch", "train_loss", "train_bpp", "eval_top1", "eval_bpp_likelihood")
    assert [[r[k] for k in keys] for r in lines["straight"]] == [
        [r[k] for k in keys] for r in lines["split"]
    ]


def test_an_existing_run_needs_resume(joint, parent) -> None:
    _, out = joint
    with pytest.raises(ConfigError, match="--resume"):
        run_finetune(_config(parent, out))


def test_resume_refuses_other_settings(joint, parent) -> None:
    _, out = joint
    with pytest.raises(ConfigError, match="beta=1.0"):
        run_finetune(_config(parent, out, beta=0.5, resume=True))


def test_a_positive_beta_lowers_the_true_rate(parent, tmp_path) -> None:
    rates = {}
    for beta in (0.0, 4.0):
        summary = run_finetune(
            _config(parent, tmp_path / f"b{beta}", mode="codec", beta=beta, epochs=2)
        )
        rates[beta] = summary["finetuned"]["bpp_true_mean"]  # from the bytes
    assert rates[4.0] < rates[0.0]
    assert rates[4.0] < summary["frozen"]["bpp_true_mean"]


def test_codec_alone_without_a_classifier(parent, tmp_path) -> None:
    """torfason2018's control: rate + distortion only; no classifier run is written."""
    out = tmp_path / "control"
    summary = run_finetune(_config(parent, out, mode="codec", classifier=None, gamma=1.0))
    assert not (out / "last.pt").exists() and (out / "codec.pt").is_file()
    assert summary["finetuned"]["top1"] is None and summary["finetuned"]["bpp_true_mean"] > 0


def test_a_classifier_of_another_codec_is_refused(parent, tmp_path) -> None:
    other = save_codec_checkpoint(
        tmp_path / "other.pt", make_tiny_model(seed=1), CodecSpec(quality=1)
    )
    with pytest.raises(CodecMismatchError, match="weights_sha256"):
        run_finetune(_config(parent, tmp_path / "x", codec=checkpoint_spec(other)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_joint_on_the_gpu_with_amp(parent, tmp_path) -> None:
    out = tmp_path / "gpu"
    summary = run_finetune(_config(parent, out, device="cuda", amp=True, gamma=1.0))
    assert (
        load_codec(checkpoint_spec(out / "codec.pt")).weights_sha256
        == summary["codec"]["weights_sha256"]
    )
    assert summary["finetuned"]["bpp_true_mean"] > 0 and summary["finetuned"]["failed"] == 0


def test_cli_runs_a_preset_and_prints_the_summary(parent, tmp_path) -> None:
    from click.testing import CliRunner

    from latentcache.cli.main import cli

    out = tmp_path / "cli"
    args = [
        "finetune", "--dataset", "imagefolder", "--data-root", str(parent["data_root"]),
        "--checkpoint", str(parent["checkpoint"]), "--preset", "chamain2021-cft-q1-b1",
        "--classifier", str(parent["run"]), "--epochs", "1", "--max-batches", "1",
        "--batch-size", "4", "--device", "cpu", "--json", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    config = json.loads((out / "finetune.json").read_text())
    assert config["preset"] == "chamain2021-cft-q1-b1" and config["mode"] == "codec"
    assert config["epochs"] == 1 and config["beta"] == 1.0  # explicit options beat the preset
    assert "--preset chamain2021-cft-q1-b1" in config["command"]
    assert summary["finetuned"]["bpp_true_mean"] > 0

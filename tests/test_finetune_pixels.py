"""Task mode (T-FT) on decoded pixels: a ResNet-50 trained on the decode stage's PNGs of the
tiny real codec, fine-tuned on g_s(y_hat) of real texture images with the codec frozen."""

from __future__ import annotations

import pytest
import torch
from conftest import checkpoint_spec, encode_with_tiny_checkpoint

from latentcache.codec.load import load_codec
from latentcache.errors import ConfigError
from latentcache.finetune import FinetuneConfig, run_finetune
from latentcache.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pixel_parent(tmp_path_factory, texture_root, one_torch_thread):
    """Tiny codec -> store -> decoded PNGs -> a ResNet-50 trained on them."""
    from latentcache.pixels.decode import DecodeConfig, run_decode
    from latentcache.pixels.train import ImageTrainConfig, run_image_training

    root = tmp_path_factory.mktemp("pixparent")
    ckpt, store = encode_with_tiny_checkpoint(root, texture_root)
    run_decode(DecodeConfig(str(store), str(root / "images")), load_codec(checkpoint_spec(ckpt)))
    run = root / "classifier"
    run_image_training(
        ImageTrainConfig.from_dict(
            {"source": "decoded", "images": str(root / "images"), "model": "resnet50",
             "out": str(run), "epochs": 1, "batch_size": 4, "resize": 32, "crop": 24,
             "max_batches": 2, "model_kwargs": {"pretrained": False}, "progress": False,
             "device": "cpu"}
        )
    )  # fmt: skip
    return {"checkpoint": ckpt, "run": run, "data_root": texture_root}


def _config(parent, out, **kw) -> FinetuneConfig:
    base = dict(
        dataset="imagefolder", data_root=str(parent["data_root"]), out=str(out), mode="task",
        classifier=str(parent["run"]), codec=checkpoint_spec(parent["checkpoint"]), epochs=1,
        batch_size=4, max_batches=2, lr=1e-3, progress=False, device="cpu",
    )  # fmt: skip
    return FinetuneConfig(**{**base, **kw})


def test_task_mode_on_decoded_pixels_trains_only_the_classifier(pixel_parent, tmp_path) -> None:
    from latentcache.pixels.train import evaluate_image_run

    out = tmp_path / "tft"
    summary = run_finetune(_config(pixel_parent, out))
    before = dict(load_codec(checkpoint_spec(pixel_parent["checkpoint"])).model.named_parameters())
    after = dict(load_codec(checkpoint_spec(out / "codec.pt")).model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)  # the codec is frozen
    old = load_checkpoint(pixel_parent["run"] / "last.pt")["model"]
    new = load_checkpoint(out / "last.pt")["model"]
    weights = [n for n in old if n.endswith("weight") and old[n].dim() == 4]
    assert weights and all(not torch.equal(old[n], new[n]) for n in weights)
    assert summary["codec"]["weights_sha256"] == summary["parent_codec"]["weights_sha256"]
    for key in ("frozen", "finetuned"):  # decoded from the real bytes, then classified
        assert 0 <= summary[key]["top1"] <= 1 and summary[key]["bpp_true_mean"] > 0
    state = load_checkpoint(out / "last.pt")
    assert state["inputs"] == ["image"] and state["config"]["out"] == str(out)
    got = evaluate_image_run(out, "test", checkpoint="last", device="cpu")
    assert got["count"] > 0 and 0 <= got["top1"] <= 1


@pytest.mark.parametrize("mode", ["codec", "joint"])
def test_a_pixel_classifier_fine_tunes_in_task_mode_only(pixel_parent, tmp_path, mode) -> None:
    with pytest.raises(ConfigError, match="reads decoded pixels: it fine-tunes in mode 'task'"):
        run_finetune(_config(pixel_parent, tmp_path / mode, mode=mode))

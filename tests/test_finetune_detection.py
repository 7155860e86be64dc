"""chamain2021 on a detector: each fine-tuning mode changes exactly the parameters it should
(state dicts compared before and after one step), on real photos with their boxes."""

from __future__ import annotations

import copy

import pytest
import torch
from detection_fixtures import write_coco_tree

from latentcache.datasets import build_index
from latentcache.errors import ConfigError
from latentcache.finetune.detection import (
    DetectionFinetuner,
    DetectionImages,
    canvas_offset,
    decoded_images,
    detection_loader,
)
from latentcache.train.models.detector_registry import create_detector

HEADS = {"rpn_pre_nms_top_n_train": 64, "rpn_post_nms_top_n_train": 32,
         "box_batch_size_per_image": 16}  # fmt: skip
DETECTORS = {
    "pixels": ("fasterrcnn-resnet50-fpn", {"pretrained": False, "min_size": 96, "max_size": 128}),
    "latents": ("fasterrcnn-cresnet39", {"base_width": 4, "fpn_channels": 16}),
}
CODEC_PARTS = ("g_a", "h_a", "h_s", "entropy_bottleneck")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    index = build_index("coco", write_coco_tree(tmp_path_factory.mktemp("coco")))
    images = DetectionImages(index.root, index.split("train"), index.options["category_ids"])
    return next(iter(detection_loader(images, batch_size=1, shuffle=False)))


def _detector(kind: str, channels: int):
    name, kwargs = DETECTORS[kind]
    torch.manual_seed(0)
    return create_detector(name, 3 if kind == "pixels" else channels, 3, **kwargs, **HEADS)


def _changed(before: dict, module: torch.nn.Module) -> set[str]:
    after = module.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def _assert_moved_by_gradients(module: torch.nn.Module, changed: set[str], aux=()) -> None:
    """Exactly the parameters with a gradient moved (Adam's first step is about lr * sign);
    zero gradients (zero-initialised residual branches) leave theirs in place."""
    params = dict(module.named_parameters())
    grads = {
        n: float(p.grad.abs().max())
        for n, p in params.items()
        if p.grad is not None and n not in aux
    }
    moved = (changed & set(params)) - set(aux)
    assert (
        {n for n, g in grads.items() if g > 1e-6} <= moved <= {n for n, g in grads.items() if g > 0}
    )


def test_loader_gives_padded_images_with_boxes_on_their_canvas(batch):
    x, t = batch["x"], batch["targets"][0]
    assert x.shape[-2] % 64 == 0 and x.shape[-1] % 64 == 0
    h, w = t["image_size"]
    top, left = t["canvas_offset"]
    assert (top, left) == canvas_offset(h, w) and (x.shape[-2] - h) // 2 == top
    assert x[0, :, top : top + h, left : left + w].std() > 0.05  # the photo
    assert float(x[0, :, :top].abs().sum() + x[0, :, :, :left].abs().sum()) == 0.0  # padding
    assert len(t["boxes"]) == len(t["labels"]) >= 1
    cut = decoded_images(x, batch["targets"])[0]
    assert cut.shape == (3, h, w)


@pytest.mark.parametrize("kind", sorted(DETECTORS))
@pytest.mark.parametrize("mode", ["task", "codec", "joint"])
def test_each_mode_changes_exactly_its_parameters(batch, tiny_model, one_torch_thread, kind, mode):
    codec = copy.deepcopy(tiny_model)
    detector = _detector(kind, codec.M)
    frozen_own = {n for n, p in detector.named_parameters() if not p.requires_grad}
    codec_before = {k: v.clone() for k, v in codec.state_dict().items()}
    det_before = {k: v.clone() for k, v in detector.state_dict().items()}
    tuner = DetectionFinetuner(codec, detector, mode, beta=0.5, lr=1e-3)
    record = tuner.step(batch["x"], batch["targets"])
    assert all(torch.isfinite(torch.tensor(v)) for v in record.values())
    codec_changed, det_changed = _changed(codec_before, codec), _changed(det_before, detector)
    det_params = {n for n, _ in detector.named_parameters()}

    if mode == "codec":
        assert det_changed == set()  # weights and BatchNorm statistics
        assert all(p.grad is None for p in detector.parameters())
    else:
        trained = det_changed & det_params
        assert trained and not trained & frozen_own
        assert any("roi_heads.box_predictor" in k for k in trained)
        _assert_moved_by_gradients(detector, det_changed)
    if mode == "task":
        assert codec_changed == set()
        assert all(p.grad is None for p in codec.parameters())
        assert "aux" not in record
    else:
        parts = CODEC_PARTS + (("g_s",) if kind == "pixels" else ())
        assert {k.split(".")[0] for k in codec_changed} == set(parts)
        _assert_moved_by_gradients(codec, codec_changed, aux=["entropy_bottleneck.quantiles"])
        assert "entropy_bottleneck.quantiles" in codec_changed  # the aux step
        assert record["aux"] >= 0


def test_unknown_mode_is_refused(tiny_model):
    with pytest.raises(ConfigError, match="Invalid mode"):
        DetectionFinetuner(copy.deepcopy(tiny_model), _detector("latents", 24), "both")


def _cli(*args):
    from click.testing import CliRunner

    from latentcache.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_detection_finetune_writes_codec_detector_and_map(tmp_path, tiny_checkpoint):
    import json

    from conftest import checkpoint_spec

    from latentcache.codec.load import load_codec

    root = write_coco_tree(tmp_path / "data", names=("train", "val"), ann_name="{}.json")
    common = ["finetune", "--task", "detection", "-d", "cocofolder", "--data-root", root,
              "--checkpoint", tiny_checkpoint, "--epochs", 1, "-b", 1, "--max-batches", 2,
              "--image-min-size", 96, "--image-max-size", 128, "--device", "cpu",
              "--eval-split", "train", "--threads", 1, "--json"]  # fmt: skip
    first = _cli(*common, "--mode", "joint", "--beta", 0.5, "--out", tmp_path / "jft")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output[first.output.index("{") :])
    assert summary["task"] == "detection" and summary["mode"] == "joint"
    assert summary["codec"]["weights_sha256"] != summary["parent_codec"]["weights_sha256"]
    for side in ("frozen", "finetuned"):
        m = summary[side]
        assert m["images"] == 2 and m["failed"] == 0 and m["bpp_true_mean"] > 0
        assert 0.0 <= m["map"] <= 1.0 and set(m["per_class_ap"]) == {"person", "cat", "cup"}
    new = load_codec(checkpoint_spec(tmp_path / "jft" / "codec.pt"))
    assert new.weights_sha256 == summary["codec"]["weights_sha256"]
    assert (tmp_path / "jft" / "detector.pt").is_file()


@pytest.mark.slow
def test_cli_task_mode_from_a_detector_run(tmp_path, tiny_checkpoint):
    import json

    root = write_coco_tree(tmp_path / "data", names=("train", "val"), ann_name="{}.json")
    common = ["finetune", "--task", "detection", "-d", "cocofolder", "--data-root", root,
              "--checkpoint", tiny_checkpoint, "--epochs", 1, "-b", 1, "--max-batches", 1,
              "--image-min-size", 96, "--image-max-size", 128, "--device", "cpu",
              "--threads", 1, "--json"]  # fmt: skip
    assert _cli(*common, "--mode", "codec", "--out", tmp_path / "cft").exit_code == 0
    second = _cli(
        *common, "--mode", "task", "--detector", tmp_path / "cft", "--out", tmp_path / "t"
    )
    assert second.exit_code == 0, second.output
    tft = json.loads(second.output[second.output.index("{") :])
    assert tft["codec"]["weights_sha256"] == tft["parent_codec"]["weights_sha256"]


def test_cli_detection_finetune_refuses_classifier_options_and_latent_models(
    tmp_path, tiny_checkpoint
):
    root = write_coco_tree(tmp_path / "data", names=("train", "val"), ann_name="{}.json")
    base = ["finetune", "--task", "detection", "-d", "cocofolder", "--data-root", root,
            "--checkpoint", tiny_checkpoint, "--device", "cpu"]  # fmt: skip
    bad = _cli(*base, "--classifier", tmp_path, "--out", tmp_path / "a")
    assert bad.exit_code != 0 and "--task detection takes no --classifier" in bad.output
    latent = _cli(*base, "--detector-model", "fasterrcnn-cresnet39", "--out", tmp_path / "b")
    assert latent.exit_code != 0 and "reads latents" in latent.output
    seg = _cli("finetune", "--task", "detection", "-d", "imagefolder", "--data-root", root,
               "--checkpoint", tiny_checkpoint, "--out", tmp_path / "c")  # fmt: skip
    assert seg.exit_code != 0 and "Error:" in seg.output

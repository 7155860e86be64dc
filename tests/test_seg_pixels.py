"""The segmentation pixel baseline: torchvision's DeepLabV3-ResNet-50 on decoded and original
images with their masks, augmented together, scored on whole images with the task's meter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from seg_helpers import SEG_CLASSES, SEG_SIZES, encode_seg_store, position_mask

from latentcache.datasets.masks import IGNORE_INDEX, read_mask
from latentcache.errors import ConfigError
from latentcache.pixels.data import MEAN, STD
from latentcache.pixels.seg_data import SizeBatches, augment_pair
from latentcache.pixels.train import ImageTrainConfig, evaluate_image_run, run_image_training
from latentcache.train.models import CLASSIFIERS, create_classifier, list_classifiers

torch.set_num_threads(1)

TINY = {
    "model": "deeplabv3-resnet50",
    "model_kwargs": {"output_stride": 16, "pretrained": False},
    "epochs": 1,
    "batch_size": 2,
    "max_batches": 1,
    "optimizer": "adamw",
    "lr": 1e-3,
    "crop": 32,
    "device": "cpu",
    "progress": False,
}


def test_deeplabv3_resnet50_is_torchvisions_model_registered_for_segmentation():
    from torchvision.models.segmentation import deeplabv3_resnet50

    entry = CLASSIFIERS["deeplabv3-resnet50"]
    assert (entry.task, entry.inputs, entry.imagenet, entry.latent) == (
        "segmentation",
        ("image",),
        True,
        False,
    )
    assert "deeplabv3-resnet50" in list_classifiers("segmentation")
    ours = create_classifier("deeplabv3-resnet50", 3, 5, pretrained=False)
    theirs = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=5, aux_loss=False)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(1, 3, 45, 61)  # odd size: logits come back at the image's own size
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), theirs.eval()(x)["out"])
    assert ours.initialised_from["kind"] == "random" and ours.inputs == ("image",)
    with pytest.raises(ConfigError, match="output_stride"):
        create_classifier("deeplabv3-resnet50", 3, 5, pretrained=False, output_stride=32)


def _coded(mask: np.ndarray) -> np.ndarray:
    """An RGB image whose red channel tells each pixel's mask value (and 0 for 255)."""
    rgb = np.zeros((*mask.shape, 3), np.uint8)
    rgb[..., 0] = np.where(mask == IGNORE_INDEX, 0, 40 + 50 * mask.astype(np.int32))
    rgb[..., 1] = 128
    return rgb


def _decoded(image: torch.Tensor) -> np.ndarray:
    red = (image[0] * STD[0] + MEAN[0]) * 255.0
    return np.round(red.numpy()).astype(np.int32)


@pytest.mark.parametrize("seed", range(6))
def test_scale_crop_and_flip_keep_image_and_mask_aligned(seed):
    h, w = SEG_SIZES[seed]
    mask = position_mask(h, w)
    rgb = _coded(mask)
    rng = np.random.default_rng(seed)
    image, target = augment_pair(rgb, mask, rng, 72, (1.0, 1.0), flip=True)
    assert image.shape == (3, 72, 72) and target.shape == (72, 72) and target.dtype == torch.uint8
    red, t = _decoded(image), target.numpy().astype(np.int32)
    on_image = image[1] != 0  # the green channel is 128 on the image, 0 (the mean) in the pad
    assert (t[~on_image.numpy()] == IGNORE_INDEX).all()  # pixels off the image: ignored
    labelled = on_image.numpy() & (t != IGNORE_INDEX)
    assert labelled.any() and (red[labelled] == 40 + 50 * t[labelled]).all()
    # scaled: the mask keeps the dataset's values (nearest), never an interpolated one
    _, scaled = augment_pair(rgb, mask, np.random.default_rng(seed), 40, (0.5, 2.0), True)
    assert set(np.unique(scaled.numpy())) <= set(np.unique(mask)) | {IGNORE_INDEX}


def test_the_same_draws_whatever_the_worker():
    rgb, mask = _coded(position_mask(75, 101)), position_mask(75, 101)
    a = augment_pair(rgb, mask, np.random.default_rng([0, 3, 5]), 48, (0.5, 2.0), True)
    b = augment_pair(rgb, mask, np.random.default_rng([0, 3, 5]), 48, (0.5, 2.0), True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_eval_batches_hold_one_image_size_each_and_every_image_once():
    sizes = [(5, 7), (6, 6), (5, 7), (5, 7), (6, 6), (9, 2)]
    batches = list(SizeBatches(sizes, 2))
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    assert all(len({sizes[i] for i in b}) == 1 and len(b) <= 2 for b in batches)
    assert batches == list(SizeBatches(sizes, 2))


@pytest.fixture(scope="module")
def decoded(tmp_path_factory, tiny_codec):
    from latentcache.pixels.decode import DecodeConfig, run_decode

    root = tmp_path_factory.mktemp("segpixels")
    result = encode_seg_store(root / "data", root / "store", tiny_codec, formats=("zarr",))
    index = run_decode(DecodeConfig(str(result.path), str(root / "images")), tiny_codec)
    return root / "images", index


def test_decode_writes_each_images_mask_from_the_store(decoded):
    images, index = decoded
    assert index["task"] == "segmentation" and index["classes"] == list(SEG_CLASSES)
    assert len(index["samples"]) == len(SEG_SIZES)
    for s in index["samples"]:
        i = int(s["key"][2:])
        assert s["target"] == f"{s['split']}/{s['key']}.mask.png"
        np.testing.assert_array_equal(read_mask(images / s["target"]), position_mask(*SEG_SIZES[i]))


def _check_run(out, split, count, pixels, classes=SEG_CLASSES):
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and {"eval_miou", "eval_pixel_accuracy", "train_loss"} <= set(lines[0])
    ev = json.loads((out / f"eval_{split}.json").read_text())
    assert ev["count"] == count and ev["pixels"] == pixels  # whole images, 255 left out
    assert set(ev["per_class_iou"]) == set(classes) and 0.0 <= ev["miou"] <= 1.0
    config = json.loads((out / "config.json").read_text())
    assert config["initialised_from"]["kind"] == "random"
    for name in ("best.pt", "last.pt", "curves.png", f"confusion_{split}.png"):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_decoded_images_train_and_evaluate_on_whole_images(decoded, tmp_path):
    images, index = decoded
    out = tmp_path / "run"
    config = ImageTrainConfig(source="decoded", images=str(images), out=str(out), **TINY)
    run_image_training(config, index["codec"])
    val = [SEG_SIZES[i] for i in range(len(SEG_SIZES)) if i % 3 == 0]
    pixels = sum(int((position_mask(h, w) != IGNORE_INDEX).sum()) for h, w in val)
    _check_run(out, "val", len(val), pixels)
    got = evaluate_image_run(out, "val", checkpoint="last", device="cpu")
    assert (got["task"], got["count"], got["pixels"]) == ("segmentation", len(val), pixels)
    saved = json.loads((out / "eval_val.json").read_text())
    assert got["miou"] == pytest.approx(saved["miou"])  # deterministic evaluation


@pytest.mark.slow
def test_original_images_train_with_the_datasets_masks(segfolder_root, tmp_path):
    out = tmp_path / "run"
    config = ImageTrainConfig(
        source="original", images=str(segfolder_root), dataset="segfolder", out=str(out), **TINY
    )
    run_image_training(config)
    masks = [read_mask(p) for p in sorted((segfolder_root / "val" / "masks").glob("*.png"))]
    pixels = sum(int((m != IGNORE_INDEX).sum()) for m in masks)
    classes = (segfolder_root / "classes.txt").read_text().split()
    _check_run(out, "validate", len(masks), pixels, classes)  # the adapter's "val" name


def test_a_classifier_on_segmentation_images_is_refused_in_one_line(segfolder_root, tmp_path):
    config = ImageTrainConfig(
        source="original",
        images=str(segfolder_root),
        dataset="segfolder",
        out=str(tmp_path / "run"),
        **{**TINY, "model": "resnet50", "model_kwargs": {"pretrained": False}},
    )
    with pytest.raises(ConfigError, match="classification model.*segmentation"):
        run_image_training(config)


def test_torfason2018_segmentation_trains_resnet50_d_on_decoded_and_original_images(tmp_path):
    from latentcache.recipes import load_recipe
    from latentcache.recipes.stages import build_stages

    recipe = load_recipe("torfason2018-segmentation")
    trains = {s.id: s for s in build_stages(recipe, tmp_path) if s.kind == "train"}
    pixel = sorted(i for i in trains if "resnet50-d" in i)
    assert pixel == [
        "train-original-resnet50-d-original-s0",
        *(f"train-q{q}-mse-resnet50-d-decoded-s0" for q in (1, 3, 5)),
    ]
    for i in pixel:
        cfg = trains[i].config
        assert trains[i].problem is None and cfg["model"] == "deeplabv3-resnet50"
        assert (cfg["crop"], cfg["resize"], cfg["model_kwargs"]) == (
            320,
            None,
            {"rates": [6, 12, 18, 24]},
        )
    # Table 2's ResNet-50-d rows name the architecture, so each meets our line
    rows = [p for p in recipe.papers if p.model == "deeplabv3-resnet50"]
    assert sorted((p.input, p.bpp, p.miou) for p in rows if p.input == "decoded") == [
        ("decoded", 0.0983, 52.97),
        ("decoded", 0.33, 60.75),
        ("decoded", 0.635, 62.97),
    ]
    assert [(p.input, p.miou) for p in rows if p.input == "original"] == [("original", 65.75)]


def test_head_lr_mult_speeds_up_the_deeplab_head_alone():
    from latentcache.train.schedule import EpochSchedule, param_groups

    for name, kw, head in (
        ("cresnet39-d", {"base_width": 4}, "head"),
        ("deeplabv3-resnet50", {"pretrained": False, "output_stride": 16}, "classifier"),
    ):
        model = create_classifier(name, 8 if name.startswith("c") else 3, 4, **kw)
        rest, fast = param_groups(model, 1e-3, 10.0)
        assert {id(p) for p in fast["params"]} == {id(p) for p in getattr(model, head).parameters()}
        assert len(rest["params"]) + len(fast["params"]) == len(list(model.parameters()))
        optimizer = torch.optim.SGD([rest, fast], lr=1e-3)
        schedule = EpochSchedule(optimizer, "poly", 19)
        schedule.step()
        lrs = [g["lr"] for g in optimizer.param_groups]
        assert lrs[1] == pytest.approx(10 * lrs[0]) and lrs[0] < 1e-3
        assert len(param_groups(model, 1e-3)) == 1
    classifier = create_classifier("resnet50", 3, 4, pretrained=False)
    with pytest.raises(ConfigError, match="names no head"):
        param_groups(classifier, 1e-3, 10.0)

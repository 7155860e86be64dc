"""TFA through `finetune --task detection` on the COCO-JSON fixture: base training on a subset
of the classes, then a k-shot run of all classes where only the grown box predictor trains,
with per-class AP50 and nAP50 in the summary."""

from __future__ import annotations

import pytest
import torch
from detection_fixtures import write_coco_tree

from latentcache.codec.spec import CodecSpec
from latentcache.errors import ConfigError
from latentcache.finetune.detection_run import DetectionFinetuneConfig, run_detection_finetune
from latentcache.train.checkpoint import load_checkpoint

torch.set_num_threads(1)


def _config(root, out, codec, **kw) -> DetectionFinetuneConfig:
    base = dict(
        dataset="cocofolder", data_root=str(root), out=str(out), mode="task", input="original",
        codec=CodecSpec(source="checkpoint", checkpoint=str(codec)), detector_model="fasterrcnn-resnet50-fpn",
        detector_kwargs={"min_size": 64, "max_size": 96, "pretrained": False}, epochs=1,
        batch_size=1, max_batches=1, device="cpu", eval_split="train",
    )  # fmt: skip
    return DetectionFinetuneConfig(**base | kw)


@pytest.mark.slow
def test_base_training_then_kshot_box_predictor_only(tmp_path, tiny_checkpoint):
    root = write_coco_tree(tmp_path / "data", names=("train", "val"), ann_name="{}.json")
    base = run_detection_finetune(_config(root, tmp_path / "base", tiny_checkpoint,
                                          classes=["person"], lr=1e-3))  # fmt: skip
    assert set(base["finetuned"]["per_class_ap50"]) == {"person"}
    few = _config(root, tmp_path / "k1", tiny_checkpoint, classes=["person", "cup"],
                  novel=["cup"], shots=1, train_only="box_predictor",
                  detector=str(tmp_path / "base"), lr=1e-2)  # fmt: skip
    summary = run_detection_finetune(few)
    got = summary["finetuned"]
    assert set(got["per_class_ap50"]) == {"person", "cup"} and got["images"] == 2
    assert got["nap50"] == pytest.approx(got["per_class_ap50"]["cup"])
    old = load_checkpoint(tmp_path / "base" / "detector.pt")
    new = load_checkpoint(tmp_path / "k1" / "detector.pt")
    assert new["classes"] == ["person", "cup"] and new["category_ids"] == [1, 7]
    head = "model.roi_heads.box_predictor."
    assert new["model"][head + "cls_score.weight"].shape[0] == 3  # + background
    same = [k for k in old["model"] if not k.startswith(head)]
    assert same and all(torch.equal(old["model"][k], new["model"][k]) for k in same)
    # the base classes' rows start from the base detector's and train; background and person
    assert not torch.equal(
        old["model"][head + "cls_score.weight"], new["model"][head + "cls_score.weight"][:2]
    )


def test_fewshot_options_are_checked(tmp_path, tiny_checkpoint):
    with pytest.raises(ConfigError, match="mode task only"):
        _config("r", "o", tiny_checkpoint, mode="joint", input="decoded",
                train_only="box_predictor")  # fmt: skip
    with pytest.raises(ConfigError, match="Invalid train_only"):
        _config("r", "o", tiny_checkpoint, train_only="heads")
    root = write_coco_tree(tmp_path / "data", names=("train", "val"), ann_name="{}.json")
    with pytest.raises(ConfigError, match="should be distinct classes"):
        run_detection_finetune(_config(root, tmp_path / "x", tiny_checkpoint, classes=["dog"]))
    with pytest.raises(ConfigError, match="only 0 objects can make 1 shots"):  # cat: crowd only
        run_detection_finetune(_config(root, tmp_path / "y", tiny_checkpoint, shots=1))

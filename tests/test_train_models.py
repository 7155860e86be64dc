"""Every registered classifier: forward + backward on latents of the shapes MINC (24x24),
RESISC-45 (16x16) and RSSCN7 (28x28) produce; a gradient for every parameter, no NaN."""

from __future__ import annotations

import pytest
import torch

from latentcache.train.models import CLASSIFIERS, create_classifier, list_classifiers
from latentcache.train.models.cresnet import CResNet

torch.set_num_threads(2)

M, CLASSES, BATCH = 8, 5, 2
LATENT_SIZES = {"minc": 24, "resisc45": 16, "rsscn7": 28}


@pytest.fixture(autouse=True)
def _no_hub_cache(tmp_path, monkeypatch):
    """Random init everywhere, whatever this machine's torch hub cache holds."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def _inputs(model, size: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = {
        "y_hat": (BATCH, M, size, size),
        "scales_hat": (BATCH, M, size, size),
        "image": (BATCH, 3, 64, 64),
    }
    return [torch.randn(shapes[name], generator=g) for name in model.inputs]


def _forward_backward(name: str, size: int) -> None:
    torch.manual_seed(0)
    in_channels = 3 if CLASSIFIERS[name].inputs == ("image",) else M
    model = create_classifier(name, in_channels, CLASSES)
    logits = model(*_inputs(model, size))
    assert logits.shape == (BATCH, CLASSES)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"


@pytest.mark.parametrize(
    "name", [n for n in list_classifiers() if CLASSIFIERS[n].inputs != ("image",)]
)
@pytest.mark.parametrize("dataset", sorted(LATENT_SIZES))
def test_latent_classifier_forward_backward(name: str, dataset: str) -> None:
    _forward_backward(name, LATENT_SIZES[dataset])


@pytest.mark.parametrize(
    "name", [n for n in list_classifiers() if CLASSIFIERS[n].inputs == ("image",)]
)
def test_pixel_classifier_forward_backward(name: str) -> None:
    _forward_backward(name, 0)


def test_registry_names_and_inputs() -> None:
    names = list_classifiers()
    for expected in (
        "cresnet39",
        "cresnet51",
        "cresnet72",
        "cresnet39-dual",
        "sresnet",
        "resnet50",
    ):
        assert expected in names
    assert create_classifier("cresnet39", M, CLASSES).inputs == ("y_hat",)
    assert create_classifier("cresnet39-dual", M, CLASSES, pretrained=False).inputs == (
        "y_hat",
        "scales_hat",
    )


def test_unknown_classifier_lists_the_valid_names() -> None:
    with pytest.raises(KeyError) as info:
        create_classifier("nope", M, CLASSES)
    assert 'Unknown classifier "nope"' in str(info.value)
    assert str(list_classifiers(None)).replace("'", "\\'") in str(info.value)


@pytest.mark.parametrize("depth,conv4_blocks", [(39, 6), (51, 10), (72, 17)])
def test_cresnet_depths_follow_torfason_table_1(depth: int, conv4_blocks: int) -> None:
    model = create_classifier(f"cresnet{depth}", M, CLASSES, base_width=8)
    assert [len(model.conv3_x), len(model.conv4_x), len(model.conv5_x)] == [4, conv4_blocks, 3]
    convs = [
        m
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d) and "downsample" not in n
    ]
    assert len(convs) == depth  # k = the convolutions of the residual branches (3 per block)


def test_cresnet_keeps_latent_resolution_in_conv3_x() -> None:
    model = create_classifier("cresnet39", M, CLASSES, base_width=8)
    x = torch.randn(1, M, 28, 28)
    assert model.conv3_x(x).shape[-2:] == (28, 28)  # Torfason Table 3: conv3_x at 28x28


def test_cresnet_on_both_inputs_doubles_the_input_channels() -> None:
    model = CResNet(M, CLASSES, base_width=8, inputs=("y_hat", "scales_hat"))
    y, s = torch.randn(2, M, 16, 16), torch.randn(2, M, 16, 16)
    assert model(y, s).shape == (2, CLASSES)
    assert model.conv3_x[0].conv1.in_channels == 2 * M


def test_dual_stem_concatenates_to_256_channels_and_keeps_resolution() -> None:
    model = create_classifier("cresnet39-dual", M, CLASSES, pretrained=False)
    y = torch.randn(2, M, 24, 24)
    stems = torch.cat([model.y_stem(y), model.scales_stem(y)], 1)
    assert stems.shape == (2, 256, 24, 24)
    assert model.layer2(stems).shape[-2:] == (24, 24)


def test_dual_stem_refuses_missing_imagenet_weights_when_required() -> None:
    from latentcache.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="resnet50-0676ba61.pth"):
        create_classifier("cresnet39-dual", M, CLASSES, pretrained=True)


def test_sresnet_stem_upsamples_four_times() -> None:
    model = create_classifier("sresnet", M, CLASSES, pretrained=False)
    assert model.stem(torch.randn(2, M, 7, 9)).shape == (2, 64, 28, 36)

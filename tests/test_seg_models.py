"""Segmentation models: registered for the segmentation task, logits at the latent's own
resolution (cResNet-d) or 2x (sResNet-DeepLab), forward + backward with every parameter
receiving a gradient."""

from __future__ import annotations

import pytest
import torch

from latentcache.tasks import get_task
from latentcache.train.models import CLASSIFIERS, create_classifier, list_classifiers


def test_registry_separates_tasks():
    seg = list_classifiers("segmentation")
    assert {"cresnet39-d", "cresnet51-d", "cresnet72-d", "sresnet-deeplab"} <= set(seg)
    assert not set(seg) & set(list_classifiers())  # the default lists classifiers only
    assert get_task("segmentation").default_model in seg
    assert get_task("classification").default_model in list_classifiers()


@pytest.mark.parametrize(
    "name, kwargs, scale",
    [
        ("cresnet39-d", {"base_width": 8}, 1),
        ("cresnet51-d", {"base_width": 8}, 1),
        pytest.param("sresnet-deeplab", {"pretrained": False}, 2, marks=pytest.mark.slow),
    ],
)
def test_forward_backward_on_latents(name, kwargs, scale):
    torch.manual_seed(0)
    model = create_classifier(name, 24, 5, **kwargs)
    assert CLASSIFIERS[name].task == "segmentation"
    x = torch.randn(2, 24, 5, 7)
    logits = model(x)
    assert logits.shape == (2, 5, 5 * scale, 7 * scale)
    target = torch.randint(0, 5, (2, 80, 112), dtype=torch.uint8)
    target[:, :3] = 255
    loss = get_task("segmentation").loss(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_cresnet_d_dilates_instead_of_striding():
    model = create_classifier("cresnet51-d", 24, 21)
    assert len(model.conv4_x) == 10 and model.conv4_x[1].conv2.dilation == (2, 2)
    assert model.conv5_x[1].conv2.dilation == (4, 4)
    rates = [m.dilation[0] for m in model.head[0].convs[1:4] for m in [m[0]]]
    assert rates == [6, 12, 18]
    assert model.head[0].convs[4][0].dilation == (24, 24)


def test_a_batch_with_every_pixel_ignored_has_zero_loss_not_nan():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = get_task("segmentation").loss(logits, torch.full((1, 32, 32), 255, dtype=torch.uint8))
    loss.backward()
    assert float(loss) == 0.0 and torch.isfinite(logits.grad).all()

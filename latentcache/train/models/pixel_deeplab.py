"""The pixel-domain segmentation baselines: torchvision's DeepLabV3-ResNet-50 (and -101) on RGB
images (original, or decoded by the codec's ``g_s``), ImageNet trunk when torch hub's cache
has it::

    image (B, 3, H, W) ─► ResNet-50 / 101, layer3/layer4 dilated (output stride 8, torchvision's
      deeplabv3_resnet50; 16: layer4 only) ─► DeepLabHead (ASPP, rates 12/24/36 or ``rates``)
      ─► logits, upsampled bilinearly by torchvision to (B, K, H, W)

It is torchvision's ``deeplabv3_resnet50`` / ``deeplabv3_resnet101`` (no auxiliary head), put
together from the same parts (``DeepLabV3``, ``DeepLabHead``, a dilated ResNet), so that its
trunk loads the cached ImageNet weights through :func:`~latentcache.train.models.common.resnet_trunk` and
records ``initialised_from`` as the classifiers do.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

from latentcache.errors import ConfigError
from latentcache.train.models.common import resnet_trunk
from latentcache.train.models.registry import register_classifier

__all__ = ["DeepLabV3Logits", "deeplabv3_resnet50", "deeplabv3_resnet101"]


class DeepLabV3Logits(DeepLabV3):
    """torchvision's DeepLabV3, returning the logits tensor instead of ``{"out": ...}``."""

    head_modules = ("classifier",)  # the DeepLab head (what --head-lr-mult speeds up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, K, H, W)
        return super().forward(x)["out"]


def _deeplabv3(
    arch: str,
    in_channels: int,
    num_classes: int,
    pretrained: bool | str = "auto",
    rates: tuple[int, ...] = (12, 24, 36),
    output_stride: int = 8,
) -> DeepLabV3Logits:
    if output_stride not in (8, 16):
        raise ConfigError(f"output_stride={output_stride}: should be 8 or 16")
    trunk = resnet_trunk(
        arch, pretrained, replace_stride_with_dilation=[False, output_stride == 8, True]
    )
    if in_channels != 3:
        trunk.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    backbone = IntermediateLayerGetter(trunk, return_layers={"layer4": "out"})
    model = DeepLabV3Logits(backbone, DeepLabHead(2048, num_classes, tuple(rates)), None)
    model.inputs = ("image",)
    model.initialised_from = trunk.initialised_from
    return model


@register_classifier("deeplabv3-resnet50", inputs=("image",), imagenet=True, task="segmentation")
def deeplabv3_resnet50(in_channels: int, num_classes: int, **kwargs) -> DeepLabV3Logits:
    """Pixel baseline: DeepLabV3-ResNet-50 on images (torchvision; decoded or original images)."""
    return _deeplabv3("resnet50", in_channels, num_classes, **kwargs)


@register_classifier("deeplabv3-resnet101", inputs=("image",), imagenet=True, task="segmentation")
def deeplabv3_resnet101(in_channels: int, num_classes: int, **kwargs) -> DeepLabV3Logits:
    """Pixel baseline: DeepLabV3-ResNet-101 on images (codevilla2021's RGB rows)."""
    return _deeplabv3("resnet101", in_channels, num_classes, **kwargs)

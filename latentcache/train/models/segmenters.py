"""Segmentation models on latents: logits (B, classes, h', w'), scored on the canvas.

::

    cresnet39-d / 51-d / 72-d   (Torfason et al. 2018, §5: cResNet-k-d)
      y_hat (B, M, h, w)
        └► conv3_x (stride 1) ─► conv4_x (dilation 2, no stride) ─► conv5_x (dilation 4)
           (B, 32 * base_width, h, w): the latent's own resolution
        └► DeepLabHead(rates 6, 12, 18, 24) (torchvision) ─► logits (B, K, h, w)

    sresnet-deeplab / sresnet101-deeplab   (Codevilla et al. 2021, Table 1: DeepLabV3 on sResNet)
      y_hat ─► sub-pixel stem (B, 256, 4h, 4w) ─► ResNet layer1..layer4, layer3 and layer4
        dilated (torchvision replace_stride_with_dilation) ─► (B, 2048, 2h, 2w)
        └► DeepLabHead(rates 12, 24, 36) ─► logits (B, K, 2h, 2w)

The paper's head is DeepLab-v2's ASPP (four 3x3 atrous branches of class scores, summed);
here it is torchvision's DeepLabV3 head (``DeepLabHead``: ASPP with a 1x1 branch, one 3x3
branch per rate and image pooling, then a 3x3 conv and a 1x1 classifier) at the paper's four
rates. Logits are upsampled bilinearly to the target canvas by the segmentation task.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from latentcache.errors import ConfigError
from latentcache.train.models.common import init_weights, make_stage, resnet_trunk
from latentcache.train.models.cresnet import CRESNET_DEPTHS
from latentcache.train.models.registry import LATENT_INPUTS, register_classifier
from latentcache.train.models.sresnet import SubPixelStem

__all__ = ["DilatedCResNet", "SResNetDeepLab", "TORFASON_RATES"]

TORFASON_RATES = (6, 12, 18, 24)


def _check_inputs(inputs) -> tuple[str, ...]:
    inputs = tuple(inputs)
    if not inputs or any(i not in LATENT_INPUTS for i in inputs):
        raise ConfigError(f"inputs={inputs}: choose from {list(LATENT_INPUTS)}")
    return inputs


class DilatedCResNet(nn.Module):
    """cResNet-k-d: cResNet's conv3_x..conv5_x with atrous conv4_x/conv5_x, ASPP head."""

    head_modules = ("head",)  # what --head-lr-mult speeds up (DeepLab: the new layers)

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depths: tuple[int, int, int] = CRESNET_DEPTHS[51],
        base_width: int = 64,
        inputs: tuple[str, ...] = ("y_hat",),
        pretrained: bool | str = False,
        rates: tuple[int, ...] = TORFASON_RATES,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        if pretrained is True:
            raise ConfigError("cResNet-d has no ImageNet weights to load; use pretrained=False")
        if base_width < 4:
            raise ConfigError(f"base_width={base_width}: should be >= 4 (the paper uses 64)")
        self.inputs = _check_inputs(inputs)
        w = base_width
        self.conv3_x = make_stage(in_channels * len(self.inputs), 2 * w, depths[0])
        self.conv4_x = make_stage(8 * w, 4 * w, depths[1], dilation=2)
        self.conv5_x = make_stage(16 * w, 8 * w, depths[2], dilation=4)
        self.head = DeepLabHead(32 * w, num_classes, atrous_rates=tuple(rates))
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)  # (B, M * len(inputs), h, w)
        return self.head(self.conv5_x(self.conv4_x(self.conv3_x(x))))  # (B, K, h, w)


class SResNetDeepLab(nn.Module):
    """sResNet's sub-pixel stem and ResNet trunk (layer3, layer4 dilated), DeepLabV3 head."""

    head_modules = ("head",)

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        arch: str = "resnet50",
        pretrained: bool | str = "auto",
        inputs: tuple[str, ...] = ("y_hat",),
        rates: tuple[int, ...] = (12, 24, 36),
    ) -> None:
        super().__init__()
        self.inputs = _check_inputs(inputs)
        self.stem = SubPixelStem(in_channels * len(self.inputs))
        init_weights(self.stem)
        trunk = resnet_trunk(arch, pretrained, replace_stride_with_dilation=[False, True, True])
        self.initialised_from = trunk.initialised_from
        self.layers = nn.Sequential(trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4)
        self.head = DeepLabHead(2048, num_classes, atrous_rates=tuple(rates))
        init_weights(self.head)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)
        return self.head(self.layers(self.stem(x)))  # (B, K, 2h, 2w)


def _dilated(depth: int):
    def build(in_channels: int, num_classes: int, **kwargs) -> DilatedCResNet:
        return DilatedCResNet(in_channels, num_classes, CRESNET_DEPTHS[depth], **kwargs)

    build.__name__ = f"cresnet{depth}_d"
    build.__doc__ = f"cResNet-{depth}-d + ASPP {{6, 12, 18, 24}} (Torfason et al. 2018, §5)."
    return build


for _depth in CRESNET_DEPTHS:
    register_classifier(f"cresnet{_depth}-d", inputs=("y_hat",), task="segmentation")(
        _dilated(_depth)
    )


@register_classifier("sresnet-deeplab", inputs=("y_hat",), imagenet=True, task="segmentation")
def sresnet_deeplab(in_channels: int, num_classes: int, **kwargs) -> SResNetDeepLab:
    """DeepLabV3 on sResNet-50 (Codevilla et al. 2021, Table 1's design, ResNet-50 trunk)."""
    return SResNetDeepLab(in_channels, num_classes, "resnet50", **kwargs)


@register_classifier("sresnet101-deeplab", inputs=("y_hat",), imagenet=True, task="segmentation")
def sresnet101_deeplab(in_channels: int, num_classes: int, **kwargs) -> SResNetDeepLab:
    """DeepLabV3 on sResNet-101 (Codevilla et al. 2021, Table 1)."""
    return SResNetDeepLab(in_channels, num_classes, "resnet101", **kwargs)

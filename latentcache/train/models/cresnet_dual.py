"""The dual-stem cResNet-39 of Gupta et al. (2024), §2.3 and Table 2: one residual block
for ``y_hat`` and one for ``scales_hat``, concatenated to 256 channels, into ResNet-50's
layer2..layer4 (ImageNet weights when torch hub's cache has them)::

    y_hat      (B, M, h, w) ─► Bottleneck [1x1,32 3x3,32 1x1,128] ─┐
    scales_hat (B, M, h, w) ─► Bottleneck [1x1,32 3x3,32 1x1,128] ─┴► cat (B, 256, h, w)
      └► layer2 (conv3_x, x4, stride 1)  (B, 512, h, w)
         layer3 (conv4_x, x6)            (B, 1024, h/2, w/2)
         layer4 (conv5_x, x3)            (B, 2048, h/4, w/4)
         global average pool, fc 2048 ─► logits (B, classes)

torchvision's layer2 strides by 2 in its first block; here it runs at stride 1 so conv3_x
sees the latent's own resolution, as in Torfason et al. Table 3 (weights are unchanged by
the stride; ``layer2_stride=2`` restores torchvision's).
"""

from __future__ import annotations

import torch
from torch import nn

from latentcache.errors import ConfigError
from latentcache.train.models.common import init_weights, make_stage, resnet_trunk
from latentcache.train.models.registry import register_classifier

__all__ = ["DualStemCResNet"]


def _set_layer_stride(layer: nn.Sequential, stride: int) -> None:
    first = layer[0]
    first.conv2.stride = (stride, stride)
    first.downsample[0].stride = (stride, stride)


class DualStemCResNet(nn.Module):
    """Two bottleneck stems (y_hat, scales_hat) -> ResNet-50 layer2..layer4."""

    inputs = ("y_hat", "scales_hat")

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        pretrained: bool | str = "auto",
        layer2_stride: int = 1,
    ) -> None:
        super().__init__()
        if layer2_stride not in (1, 2):
            raise ConfigError(f"layer2_stride={layer2_stride}: should be 1 or 2")
        self.y_stem = make_stage(in_channels, 32, 1)
        self.scales_stem = make_stage(in_channels, 32, 1)
        init_weights(self)
        trunk = resnet_trunk("resnet50", pretrained)
        _set_layer_stride(trunk.layer2, layer2_stride)
        self.layer2, self.layer3, self.layer4 = trunk.layer2, trunk.layer3, trunk.layer4
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, y_hat: torch.Tensor, scales_hat: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.y_stem(y_hat), self.scales_stem(scales_hat)], dim=1)  # (B, 256, h, w)
        x = self.layer4(self.layer3(self.layer2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_classifier("cresnet39-dual", inputs=DualStemCResNet.inputs)
def cresnet39_dual(in_channels: int, num_classes: int, **kwargs) -> DualStemCResNet:
    """Dual-stem cResNet-39 (Gupta et al. 2024)."""
    return DualStemCResNet(in_channels, num_classes, **kwargs)

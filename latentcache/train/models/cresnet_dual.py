"""The dual-stem cResNet-39 of Gupta et al. (2024), §2.3 and Table 2: one residual block
for ``y_hat`` and one for ``scales_hat``, concatenated to 256 channels, into ResNet-50's
layer2..layer4 (ImageNet weights when torch hub's cache has them). It takes one stem per
latent its store has (``inputs``, from the manifest): the paper's two for a scale
hyperprior; y_hat alone (factorized prior) or y_hat, σ̂ and μ̂ (codecs with means), whose
128 x k stem channels a 1x1 convolution + BN projects to layer2's 256::

    y_hat      (B, M, h, w) ─► Bottleneck [1x1,W 3x3,W 1x1,128] ─┐
    scales_hat (B, M, h, w) ─► Bottleneck [1x1,W 3x3,W 1x1,128] ─┴► cat (B, 256, h, w)
      └► layer2 (conv3_x, x4, stride s)  (B, 512, h/s, w/s)
         layer3 (conv4_x, x6)            (B, 1024, h/2s, w/2s)
         layer4 (conv5_x, x3)            (B, 2048, h/4s, w/4s)
         global average pool, fc 2048 ─► logits (B, classes)

**Two readings of the paper, chosen explicitly.** Table 2 gives each stem a width
``W = 32`` ([1x1,32 3x3,32 1x1,128]). The paper's code (``downstream_model.py`` in its
repository) builds each stem ``[1x1,M 3x3,M 1x1,128]`` (width ``W = M``, the latent's
channels) and keeps torchvision's layer2, which strides by 2. The defaults here follow the
paper's text: ``stem_width=32`` and ``layer2_stride=1`` (conv3_x at the latent's own
resolution, as in Torfason et al. Table 3; the weights do not depend on the stride). The
``gupta2024`` preset (:mod:`latentcache.train.presets`) sets what produced the paper's
Tables 1, 3 and 4: ``stem_width="M"`` and ``layer2_stride=2``.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from latentcache.errors import ConfigError
from latentcache.train.models.common import init_weights, resnet_trunk
from latentcache.train.models.registry import STORE_INPUTS, register_classifier

__all__ = ["DualStemCResNet", "STEM_OUT"]

STEM_OUT = 128  # each stem's output channels: 2 x 128 = layer2's 256 inputs
TRUNK_IN = 256
_STEM_NAMES = {"y_hat": "y_stem", "scales_hat": "scales_stem", "means_hat": "means_stem"}


def _set_layer_stride(layer: nn.Sequential, stride: int) -> None:
    first = layer[0]
    first.conv2.stride = (stride, stride)
    first.downsample[0].stride = (stride, stride)


def _stem(in_channels: int, width: int) -> nn.Module:
    """Bottleneck [1x1 width, 3x3 width, 1x1 128] with a projected shortcut."""
    down = nn.Sequential(
        nn.Conv2d(in_channels, STEM_OUT, 1, bias=False), nn.BatchNorm2d(STEM_OUT)
    )  # torchvision: inner width = planes * base_width / 64, so base_width = 2 * width
    return Bottleneck(in_channels, STEM_OUT // 4, downsample=down, base_width=2 * width)


class DualStemCResNet(nn.Module):
    """A bottleneck stem per input (y_hat, scales_hat[, means_hat]) -> ResNet-50 layer2..4."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        pretrained: bool | str = "auto",
        layer2_stride: int = 1,
        stem_width: int | str = 32,
        inputs: tuple[str, ...] = ("y_hat", "scales_hat"),
    ) -> None:
        super().__init__()
        self.inputs = tuple(inputs)
        if not self.inputs or any(i not in _STEM_NAMES for i in self.inputs):
            raise ConfigError(f"inputs={inputs}: choose from {list(_STEM_NAMES)}")
        if layer2_stride not in (1, 2):
            raise ConfigError(f"layer2_stride={layer2_stride}: should be 1 or 2")
        width = in_channels if stem_width == "M" else stem_width
        if not isinstance(width, int) or width < 1:
            raise ConfigError(f'stem_width={stem_width!r}: should be a positive integer or "M"')
        for name in self.inputs:  # the paper's y_stem and scales_stem keep their names
            setattr(self, _STEM_NAMES[name], _stem(in_channels, width))
        fused = STEM_OUT * len(self.inputs)
        self.fuse = (
            nn.Identity()
            if fused == TRUNK_IN
            else nn.Sequential(nn.Conv2d(fused, TRUNK_IN, 1, bias=False), nn.BatchNorm2d(TRUNK_IN))
        )
        init_weights(self)
        trunk = resnet_trunk("resnet50", pretrained)
        self.initialised_from = trunk.initialised_from
        _set_layer_stride(trunk.layer2, layer2_stride)
        self.layer2, self.layer3, self.layer4 = trunk.layer2, trunk.layer3, trunk.layer4
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        stems = [getattr(self, _STEM_NAMES[n])(x) for n, x in zip(self.inputs, xs, strict=True)]
        x = self.fuse(torch.cat(stems, dim=1))  # (B, 256, h, w)
        x = self.layer4(self.layer3(self.layer2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_classifier("cresnet39-dual", inputs=STORE_INPUTS, imagenet=True)
def cresnet39_dual(in_channels: int, num_classes: int, **kwargs) -> DualStemCResNet:
    """Dual-stem cResNet-39 (Gupta et al. 2024): a stem for each of the store's latents."""
    return DualStemCResNet(in_channels, num_classes, **kwargs)

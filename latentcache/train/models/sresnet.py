"""sResNet of Codevilla et al. (2021), Table 6 and §A.3.4: a sub-pixel stem that upsamples
the latent 4x with two pixel shuffles, in place of ResNet's 7x7 root, then ResNet's
layer1..layer4 unchanged::

    y_hat (B, M, h, w)                        (M = 256 in the paper; 192 or 320 here)
      └► Block(M, M/4)        (B, M, h, w)
         PixelShuffle(2)      (B, M/4, 2h, 2w)
         Block(M/4, M/16)     (B, M/4, 2h, 2w)
         PixelShuffle(2)      (B, M/16, 4h, 4w)
         Block(M/16, M/16)    (B, M/16, 4h, 4w)
         1x1 conv, 64         (B, 64, 4h, 4w)    the shape ResNet's root hands to layer1
      └► layer1..layer4 of ResNet-50/101   (B, 2048, h/2, w/2)
         global average pool, fc ─► logits (B, classes)

**How Table 6 is read.** Table 6 prints the stem as Block(256, 64), PixelShuffle(2),
Block(64, 16), PixelShuffle(2), Block(16, 16), 1x1 64, for a 256-channel latent. We read
``Block(channels, width)`` in ResNet's bottleneck notation (the notation of the table's
other columns): a residual block on ``channels`` feature maps whose inner convolutions are
``width`` wide, ``[1x1 width, 3x3 width, 1x1 channels]``, with an identity shortcut. Then
every shape follows: 256 channels shuffle to 64, 64 to 16, and the 1x1 convolution lifts 16
to the 64 channels layer1 expects. For a latent of M channels the stem keeps the ratios:
Block(M, M/4), Block(M/4, M/16), Block(M/16, M/16). When M is not a multiple of 16 a 1x1
convolution first projects M to the next multiple of 16 (so both shuffles divide evenly).
Blocks use batch norm and SiLU (Table 2's best activation).
"""

from __future__ import annotations

import torch
from torch import nn

from latentcache.train.models.common import init_weights, resnet_trunk
from latentcache.train.models.registry import LATENT_INPUTS, register_classifier

__all__ = ["StemBlock", "SubPixelStem", "SResNet"]


class StemBlock(nn.Module):
    """Block(channels, width): bottleneck [1x1 width, 3x3 width, 1x1 channels] + identity."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        width = max(1, width)
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.SiLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.SiLU(inplace=True),
            nn.Conv2d(width, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + x)


class SubPixelStem(nn.Module):
    """Latent (B, C, h, w) -> (B, 64, 4h, 4w), Table 6's stem (see the module docstring)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        c = -(-in_channels // 16) * 16  # M, or the next multiple of 16
        project = [] if c == in_channels else [nn.Conv2d(in_channels, c, 1, bias=False)]
        self.body = nn.Sequential(
            *project,
            StemBlock(c, c // 4),
            nn.PixelShuffle(2),
            StemBlock(c // 4, c // 16),
            nn.PixelShuffle(2),
            StemBlock(c // 16, c // 16),
            nn.Conv2d(c // 16, 64, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.SiLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SResNet(nn.Module):
    """Sub-pixel stem + ResNet layer1..layer4 + fc."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        arch: str = "resnet50",
        pretrained: bool | str = "auto",
        inputs: tuple[str, ...] = ("y_hat",),
    ) -> None:
        super().__init__()
        self.inputs = tuple(inputs)
        if not self.inputs or any(i not in LATENT_INPUTS for i in self.inputs):
            raise ValueError(f"inputs={inputs}: choose from {list(LATENT_INPUTS)}")
        self.stem = SubPixelStem(in_channels * len(self.inputs))
        init_weights(self.stem)
        trunk = resnet_trunk(arch, pretrained)
        self.initialised_from = trunk.initialised_from
        self.layers = nn.Sequential(trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_classifier("sresnet", inputs=("y_hat",), imagenet=True)
def sresnet(in_channels: int, num_classes: int, **kwargs) -> SResNet:
    """sResNet (Codevilla et al. 2021, Table 6 stem) with a ResNet-50 trunk."""
    return SResNet(in_channels, num_classes, "resnet50", **kwargs)


@register_classifier("sresnet101", inputs=("y_hat",), imagenet=True)
def sresnet101(in_channels: int, num_classes: int, **kwargs) -> SResNet:
    """sResNet (Codevilla et al. 2021, Table 6 stem) with their ResNet-101 trunk."""
    return SResNet(in_channels, num_classes, "resnet101", **kwargs)

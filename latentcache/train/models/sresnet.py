"""sResNet of Codevilla et al. (2021), Table 6 and §A.3.4: a sub-pixel stem that upsamples
the latent 4x with two pixel shuffles, in place of ResNet's 7x7 root, then ResNet's
layer1..layer4 unchanged::

    y_hat (B, M, h, w)
      └► Block(M, 64)  ─► PixelShuffle(2) (B, 16, 2h, 2w)
         Block(16, 64) ─► PixelShuffle(2) (B, 16, 4h, 4w)
         Block(16, 16) ─► 1x1 conv, 64     (B, 64, 4h, 4w)
      └► layer1..layer4 of ResNet-50/101   (B, 2048, h/2, w/2)
         global average pool, fc ─► logits (B, classes)

Block(in, out) is the paper's "custom residual block": three 3x3 convolutions (the
receptive field of ResNet's 7x7) with batch norm and SiLU (Table 2's best activation), and
a 1x1 projection on the shortcut when the widths differ. Table 6 prints the middle block
as Block(64, 16), which cannot follow a shuffle that leaves 16 channels; we read it as
Block(16, 64) so the second shuffle again yields 16 channels.
"""

from __future__ import annotations

import torch
from torch import nn

from latentcache.train.models.common import init_weights, resnet_trunk
from latentcache.train.models.registry import LATENT_INPUTS, register_classifier

__all__ = ["SubPixelStem", "SResNet"]


def _conv_bn(cin: int, cout: int, act: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
    return [*layers, nn.SiLU(inplace=True)] if act else layers


class StemBlock(nn.Module):
    """Three 3x3 conv-BN(-SiLU) with a residual shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, cout, True), *_conv_bn(cout, cout, True), *_conv_bn(cout, cout, False)
        )
        self.shortcut = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class SubPixelStem(nn.Module):
    """Latent (B, C, h, w) -> (B, 64, 4h, 4w), the shape ResNet's root hands to layer1."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            StemBlock(in_channels, 64),
            nn.PixelShuffle(2),
            StemBlock(16, 64),
            nn.PixelShuffle(2),
            StemBlock(16, 16),
            nn.Conv2d(16, 64, 1, bias=False),
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
        self.layers = nn.Sequential(trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_classifier("sresnet", inputs=("y_hat",))
def sresnet(in_channels: int, num_classes: int, **kwargs) -> SResNet:
    """sResNet with a ResNet-50 trunk (the compute of the pixel baseline)."""
    return SResNet(in_channels, num_classes, "resnet50", **kwargs)


@register_classifier("sresnet101", inputs=("y_hat",))
def sresnet101(in_channels: int, num_classes: int, **kwargs) -> SResNet:
    """sResNet with the ResNet-101 trunk of Codevilla et al."""
    return SResNet(in_channels, num_classes, "resnet101", **kwargs)

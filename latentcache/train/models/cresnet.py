"""cResNet-k of Torfason et al. (2018), Table 1/3: ResNet-50 with its root and conv2_x cut
off, fed the latent at its own resolution (28x28 for a 448-pixel image; 24, 16, 28 for
MINC, RESISC-45, RSSCN7)::

    y_hat (B, M, h, w)
      └► conv3_x  [1x1,128 3x3,128 1x1,512]  x 4       (B, 512, h, w)
         conv4_x  [1x1,256 3x3,256 1x1,1024] x 6/10/17 (B, 1024, h/2, w/2)
         conv5_x  [1x1,512 3x3,512 1x1,2048] x 3       (B, 2048, h/4, w/4)
         global average pool, fc ─► logits (B, classes)

cResNet-39/51/72 differ only in the number of conv4_x blocks. ``base_width`` scales all
widths (64 is the paper; smaller values make quick experiments and tests cheap).
``inputs=("y_hat", "scales_hat")`` concatenates both along channels (2M in).
``zero_init_residual`` (default on: there are no pretrained cResNet weights) starts every
block as the identity, which trains markedly faster from scratch on small datasets.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from latentcache.errors import ConfigError
from latentcache.train.models.common import init_weights, make_stage
from latentcache.train.models.registry import LATENT_INPUTS, register_classifier

__all__ = ["CResNet", "CRESNET_DEPTHS"]

# conv3_x, conv4_x, conv5_x blocks
CRESNET_DEPTHS = {39: (4, 6, 3), 51: (4, 10, 3), 72: (4, 17, 3)}


class CResNet(nn.Module):
    """ResNet-50 bottleneck stages conv3_x..conv5_x on a latent tensor."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depths: tuple[int, int, int] = CRESNET_DEPTHS[39],
        base_width: int = 64,
        inputs: tuple[str, ...] = ("y_hat",),
        pretrained: bool | str = False,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        if pretrained is True:
            raise ConfigError("cResNet has no ImageNet weights to load; use pretrained=False")
        inputs = tuple(inputs)
        if not inputs or any(i not in LATENT_INPUTS for i in inputs):
            raise ConfigError(f"inputs={inputs}: choose from {list(LATENT_INPUTS)}")
        if base_width < 4:
            raise ConfigError(f"base_width={base_width}: should be >= 4 (the paper uses 64)")
        self.inputs = inputs
        w = base_width
        self.conv3_x = make_stage(in_channels * len(inputs), 2 * w, depths[0], stride=1)
        self.conv4_x = make_stage(8 * w, 4 * w, depths[1], stride=2)
        self.conv5_x = make_stage(16 * w, 8 * w, depths[2], stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32 * w, num_classes)
        init_weights(self)
        if zero_init_residual:  # each block starts as identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)  # (B, M * len(inputs), h, w)
        x = self.conv5_x(self.conv4_x(self.conv3_x(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _factory(depth: int):
    def build(in_channels: int, num_classes: int, **kwargs) -> CResNet:
        return CResNet(in_channels, num_classes, CRESNET_DEPTHS[depth], **kwargs)

    build.__name__ = f"cresnet{depth}"
    build.__doc__ = f"cResNet-{depth} (Torfason et al. 2018, Table 1)."
    return build


for _depth in CRESNET_DEPTHS:
    register_classifier(f"cresnet{_depth}", inputs=("y_hat",))(_factory(_depth))

"""The pixel-domain baseline the papers compare against: torchvision's ResNet-50 on RGB
images (original, or decoded by the codec's ``g_s``), ImageNet weights when cached::

    image (B, 3, H, W) ─► ResNet-50 ─► logits (B, classes)
"""

from __future__ import annotations

from torch import nn
from torchvision.models import ResNet

from latentcache.train.models.common import resnet_trunk
from latentcache.train.models.registry import register_classifier

__all__ = ["resnet50"]


@register_classifier("resnet50", inputs=("image",), imagenet=True)
def resnet50(in_channels: int, num_classes: int, pretrained: bool | str = "auto") -> ResNet:
    """Pixel baseline: ResNet-50 on images (the recipes train it on decoded or original images)."""
    model = resnet_trunk("resnet50", pretrained)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    model.inputs = ("image",)
    return model

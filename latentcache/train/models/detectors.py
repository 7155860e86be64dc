"""Registered detectors: Faster R-CNN on latents (cResNet or sResNet backbone, with FPN) and
the pixel baseline torchvision's Faster R-CNN ResNet-50-FPN::

    fasterrcnn-cresnet39/51/72   y_hat ─► conv3_x (16 px) conv4_x (32 px) conv5_x (64 px)
                                 ─► FPN + P6, P7 (128, 256 px) ─► RPN (anchors 32..512 px),
                                 RoIAlign on the 16/32/64 px levels (Torfason's cResNet)
    fasterrcnn-sresnet[101]      y_hat ─► sub-pixel stem (4 px) ─► layer1..4 (4, 8, 16, 32 px)
                                 ─► FPN + pool (64 px) ─► RPN (anchors 32..512 px), RoIAlign
                                 on 4..32 px (Codevilla et al. 2021, Table 1's sResNet-101)
    fasterrcnn-resnet50-fpn      image ─► torchvision's model (resize to min_size, ImageNet
                                 normalisation, all of GeneralizedRCNNTransform)

The cResNet backbone starts at stride 16 px, so its FPN carries two extra levels (RetinaNet's
P6/P7) to keep anchors up to 512 px; the sResNet's stem brings the latent back to stride 4 px,
where ResNet-50-FPN's own layout applies unchanged. Initialisation is recorded as for the
classifiers (``model.initialised_from``): cResNet random (zero-init residuals), the ResNet
trunks of sResNet and the pixel model ImageNet when torch hub's cache holds the weights.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.resnet import Bottleneck
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import (
    FeaturePyramidNetwork,
    LastLevelMaxPool,
    LastLevelP6P7,
)

from latentcache.errors import ConfigError
from latentcache.train.models.common import (
    init_weights,
    load_cached_imagenet,
    make_stage,
    resnet_trunk,
)
from latentcache.train.models.cresnet import CRESNET_DEPTHS
from latentcache.train.models.detector_registry import register_detector
from latentcache.train.models.rcnn_latent import LatentFasterRCNN
from latentcache.train.models.sresnet import SubPixelStem

__all__ = ["CResNetFPN", "SResNetFPN", "PixelFasterRCNN", "ANCHOR_SIZES"]

ANCHOR_SIZES = ((32,), (64,), (128,), (256,), (512,))


class CResNetFPN(nn.Module):
    """cResNet stages conv3_x..conv5_x on the latent, and an FPN with P6/P7 (see above)."""

    strides = (16, 32, 64, 128, 256)
    roi_maps = ("0", "1", "2")

    def __init__(
        self,
        in_channels: int,
        depths: tuple[int, int, int] = CRESNET_DEPTHS[51],
        base_width: int = 64,
        fpn_channels: int = 256,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        if base_width < 4:
            raise ConfigError(f"base_width={base_width}: should be >= 4 (the paper uses 64)")
        w = base_width
        self.conv3_x = make_stage(in_channels, 2 * w, depths[0], stride=1)
        self.conv4_x = make_stage(8 * w, 4 * w, depths[1], stride=2)
        self.conv5_x = make_stage(16 * w, 8 * w, depths[2], stride=2)
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
        self.fpn = FeaturePyramidNetwork(
            [8 * w, 16 * w, 32 * w], fpn_channels, LastLevelP6P7(fpn_channels, fpn_channels)
        )
        self.out_channels = fpn_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        c3 = self.conv3_x(x)  # (B, 8w, h, w)          16 px
        c4 = self.conv4_x(c3)  # (B, 16w, h/2, w/2)    32 px
        c5 = self.conv5_x(c4)  # (B, 32w, h/4, w/4)    64 px
        return self.fpn(OrderedDict([("0", c3), ("1", c4), ("2", c5)]))


class SResNetFPN(nn.Module):
    """The sResNet's sub-pixel stem and ResNet layer1..layer4, with ResNet-50-FPN's FPN."""

    strides = (4, 8, 16, 32, 64)
    roi_maps = ("0", "1", "2", "3")

    def __init__(
        self,
        in_channels: int,
        arch: str = "resnet50",
        pretrained: bool | str = "auto",
        fpn_channels: int = 256,
    ) -> None:
        super().__init__()
        self.stem = SubPixelStem(in_channels)
        init_weights(self.stem)
        trunk = resnet_trunk(arch, pretrained)
        self.initialised_from = trunk.initialised_from
        self.layers = nn.ModuleList([trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4])
        self.fpn = FeaturePyramidNetwork([256, 512, 1024, 2048], fpn_channels, LastLevelMaxPool())
        self.out_channels = fpn_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = self.stem(x)  # (B, 64, 4h, 4w)   4 px
        feats = OrderedDict()
        for i, layer in enumerate(self.layers):
            x = layer(x)
            feats[str(i)] = x
        return self.fpn(feats)


def _latent_rcnn(backbone: nn.Module, num_classes: int, **kwargs) -> LatentFasterRCNN:
    model = LatentFasterRCNN(
        backbone,
        num_classes,
        strides=backbone.strides,
        sizes=ANCHOR_SIZES,
        roi_maps=backbone.roi_maps,
        inputs=tuple(kwargs.pop("inputs", ("y_hat",))),
        **kwargs,
    )
    if hasattr(backbone, "initialised_from"):
        model.initialised_from = backbone.initialised_from
    return model


def _cresnet_factory(depth: int):
    def build(in_channels: int, num_classes: int, **kwargs) -> LatentFasterRCNN:
        n_inputs = len(kwargs.get("inputs", ("y_hat",)))
        bb = {k: kwargs.pop(k) for k in ("base_width", "fpn_channels") if k in kwargs}
        backbone = CResNetFPN(in_channels * n_inputs, CRESNET_DEPTHS[depth], **bb)
        return _latent_rcnn(backbone, num_classes, **kwargs)

    build.__name__ = f"fasterrcnn_cresnet{depth}"
    build.__doc__ = f"Faster R-CNN on latents: cResNet-{depth} + FPN (P3..P7 at 16..256 px)."
    return build


for _depth in CRESNET_DEPTHS:
    register_detector(f"fasterrcnn-cresnet{_depth}", inputs=("y_hat",))(_cresnet_factory(_depth))


def _sresnet(arch: str, in_channels: int, num_classes: int, **kwargs) -> LatentFasterRCNN:
    n_inputs = len(kwargs.get("inputs", ("y_hat",)))
    bb = {k: kwargs.pop(k) for k in ("pretrained", "fpn_channels") if k in kwargs}
    return _latent_rcnn(SResNetFPN(in_channels * n_inputs, arch, **bb), num_classes, **kwargs)


@register_detector("fasterrcnn-sresnet", inputs=("y_hat",), imagenet=True)
def fasterrcnn_sresnet(in_channels: int, num_classes: int, **kwargs) -> LatentFasterRCNN:
    """Faster R-CNN on latents: sResNet-50 (sub-pixel stem) + FPN, as ResNet-50-FPN."""
    return _sresnet("resnet50", in_channels, num_classes, **kwargs)


@register_detector("fasterrcnn-sresnet101", inputs=("y_hat",), imagenet=True)
def fasterrcnn_sresnet101(in_channels: int, num_classes: int, **kwargs) -> LatentFasterRCNN:
    """Faster R-CNN on latents: sResNet-101 + FPN (Codevilla et al. 2021, Table 1)."""
    return _sresnet("resnet101", in_channels, num_classes, **kwargs)


class PixelFasterRCNN(nn.Module):
    """torchvision's Faster R-CNN with this package's calling convention (see the registry):
    images (B, 3, H, W) in [0, 1], padded at bottom/right, cut to each ``image_size``."""

    def __init__(self, model: FasterRCNN) -> None:
        super().__init__()
        self.model = model
        self.inputs = ("image",)

    def forward(self, images: Tensor | list[Tensor], *, targets: list[dict]):
        crops = []
        for img, t in zip(images, targets, strict=True):
            h, w = (int(v) for v in t["image_size"])
            crops.append(img[:, :h, :w])
        if not self.training:
            out = self.model(crops)
            return [{**d, "labels": d["labels"] - 1} for d in out]
        moved = [{"boxes": t["boxes"].float(), "labels": t["labels"].long() + 1} for t in targets]
        return self.model(crops, moved)


@register_detector("fasterrcnn-resnet50-fpn", inputs=("image",), imagenet=True)
def fasterrcnn_resnet50_fpn(
    in_channels: int,
    num_classes: int,
    pretrained: bool | str = "auto",
    min_size: int = 800,
    max_size: int = 1333,
    **kwargs,
) -> PixelFasterRCNN:
    """Pixel baseline: torchvision's Faster R-CNN ResNet-50-FPN on decoded or original images."""
    if in_channels != 3:
        raise ConfigError(f"fasterrcnn-resnet50-fpn reads RGB images, not {in_channels} channels")
    state, record = load_cached_imagenet("resnet50", pretrained)
    backbone = resnet_fpn_backbone(
        backbone_name="resnet50",
        weights=None,
        norm_layer=FrozenBatchNorm2d if state is not None else nn.BatchNorm2d,
        trainable_layers=3 if state is not None else 5,
    )
    if state is not None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        backbone.body.load_state_dict(state)
    model = FasterRCNN(
        backbone, num_classes=num_classes + 1, min_size=min_size, max_size=max_size, **kwargs
    )
    wrapped = PixelFasterRCNN(model)
    wrapped.initialised_from = {**record, "arch": "resnet50"}
    return wrapped

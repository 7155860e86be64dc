"""Building blocks shared by the classifier families: ResNet bottleneck stages and
ImageNet weights taken from torch hub's cache only (never downloaded here)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from latentcache.errors import ConfigError, WeightsNotFoundError
from latentcache.store.manifest import file_sha256

__all__ = [
    "make_stage",
    "init_weights",
    "load_cached_imagenet",
    "resnet_trunk",
    "PRETRAINED_CHOICES",
]

logger = logging.getLogger(__name__)

PRETRAINED_CHOICES = ("auto", True, False)

_WEIGHTS = {
    "resnet50": (
        tv_resnet.ResNet50_Weights.IMAGENET1K_V1,
        tv_resnet.ResNet50_Weights.IMAGENET1K_V2,
    ),
    "resnet101": (
        tv_resnet.ResNet101_Weights.IMAGENET1K_V1,
        tv_resnet.ResNet101_Weights.IMAGENET1K_V2,
    ),
}


def make_stage(
    inplanes: int, planes: int, blocks: int, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """``blocks`` ResNet-50 bottlenecks (1x1 planes, 3x3 planes, 1x1 4*planes).

    The first block projects ``inplanes`` to ``4 * planes`` (and strides) when needed.
    ``dilation`` > 1 (atrous, DeepLab): the 3x3 convolutions of every block after the first
    are dilated, as torchvision's ``replace_stride_with_dilation`` does for a stage.
    """
    outplanes = planes * tv_resnet.Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False),
            nn.BatchNorm2d(outplanes),
        )
    layers = [tv_resnet.Bottleneck(inplanes, planes, stride, downsample)]
    layers += [
        tv_resnet.Bottleneck(outplanes, planes, dilation=dilation) for _ in range(blocks - 1)
    ]
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming for convs, ones/zeros for norms."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _cached_files(arch: str) -> list[Path]:
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return [hub / Path(w.url).name for w in _WEIGHTS[arch]]


def load_cached_imagenet(arch: str, pretrained: bool | str) -> tuple[dict | None, dict]:
    """ImageNet state dict of torchvision's ``arch`` if torch hub's cache has it, and the
    record of what was loaded: ``{"kind": "imagenet", "file", "sha256"}`` or
    ``{"kind": "random", "reason"}``.

    ``pretrained``: ``"auto"`` (use when cached, else random init with a WARNING),
    ``True`` (required: raise :class:`WeightsNotFoundError` naming the file and URL) or
    ``False`` (never).
    """
    if pretrained not in PRETRAINED_CHOICES:
        raise ConfigError(f"pretrained={pretrained!r}; valid: {list(PRETRAINED_CHOICES)}")
    if pretrained is False:
        logger.info("%s trunk: random init (pretrained=False)", arch)
        return None, {"kind": "random", "reason": "pretrained weights not requested"}
    for path in _cached_files(arch):
        if path.is_file():
            logger.info("%s trunk: ImageNet weights from %s", arch, path)
            state = torch.load(path, map_location="cpu", weights_only=True)
            return state, {"kind": "imagenet", "file": str(path), "sha256": file_sha256(path)}
    expected = _cached_files(arch)[0]
    if pretrained is True:
        url = _WEIGHTS[arch][0].url
        raise WeightsNotFoundError(
            f"ImageNet weights for {arch} are not cached: expected {expected} "
            f"(download {url} there, or use --pretrained auto for random init)"
        )
    logger.warning(
        "%s trunk: RANDOM weights replace the requested ImageNet weights (none cached at %s); "
        "--pretrained require refuses to start without them",
        arch,
        expected,
    )
    return None, {"kind": "random", "reason": f"no ImageNet weights cached at {expected}"}


def resnet_trunk(arch: str, pretrained: bool | str, **kwargs) -> tv_resnet.ResNet:
    """torchvision's ResNet ``arch``, with cached ImageNet weights when available;
    ``trunk.initialised_from`` records which (see :func:`load_cached_imagenet`). ``kwargs``
    go to torchvision (``replace_stride_with_dilation``: the same weights, dilated)."""
    factory = {"resnet50": tv_resnet.resnet50, "resnet101": tv_resnet.resnet101}[arch]
    model = factory(weights=None, **kwargs)
    state, record = load_cached_imagenet(arch, pretrained)
    if state is not None:
        model.load_state_dict(state)
    model.initialised_from = {**record, "arch": arch}
    return model

"""Classifiers for latents (and the pixel baseline), by name.

>>> from latentcache.train.models import create_classifier
>>> model = create_classifier("cresnet39", in_channels=192, num_classes=23)
>>> model.inputs
('y_hat',)

Families: ``cresnet39/51/72`` (Torfason et al. 2018), ``cresnet39-dual`` (Gupta et al.
2024), ``sresnet``/``sresnet101`` (Codevilla et al. 2021) and the pixel ``resnet50``; for
segmentation the ``cresnet*-d`` and ``sresnet*-deeplab`` latent models and the pixel
``deeplabv3-resnet50``.
"""

from latentcache.train.models import (  # noqa: F401  (their decorators fill the registries)
    cresnet,
    cresnet_dual,
    detectors,
    pixel_deeplab,
    pixel_resnet,
    segmenters,
    sresnet,
)
from latentcache.train.models.registry import (
    CLASSIFIERS,
    LATENT_INPUTS,
    ClassifierEntry,
    create_classifier,
    list_classifiers,
    register_classifier,
)

__all__ = [
    "CLASSIFIERS",
    "LATENT_INPUTS",
    "ClassifierEntry",
    "create_classifier",
    "list_classifiers",
    "register_classifier",
]

"""The pixel baselines the papers compare against: bitstreams decoded once into images
(:func:`run_decode`, the one place ``g_s`` runs; a dense task's masks written beside them)
and models trained on those images or on the originals (:func:`run_image_training`:
classifiers, or DeepLabV3 for segmentation), with the latent models' training loop."""

from latentcache.pixels.decode import DecodeConfig, read_image_index, run_decode
from latentcache.pixels.train import ImageTrainConfig, evaluate_image_run, run_image_training

__all__ = [
    "DecodeConfig",
    "run_decode",
    "read_image_index",
    "ImageTrainConfig",
    "run_image_training",
    "evaluate_image_run",
]

"""The codec layer: which learned codec, where its weights come from, and its latents.

``spec.py`` (no torch import) names a codec; ``load.py`` builds the CompressAI model and its
identity; ``latents.py`` turns images into bitstreams and bitstreams into ``y_hat`` /
``scales_hat`` without running the synthesis transform ``g_s``.
"""

from latentcache.codec.spec import ARCHITECTURES, CodecSpec

__all__ = ["ARCHITECTURES", "CodecSpec"]

"""The codec layer: which learned codec, where its weights come from, and its latents.

``spec.py`` (no torch import) names a codec; ``load.py`` builds the CompressAI model and its
identity; ``latents.py`` turns images into bitstreams and bitstreams into ``y_hat`` /
``scales_hat`` without running the synthesis transform ``g_s``.
"""

from latentcache.codec.spec import CodecSpec, architectures

__all__ = ["ARCHITECTURES", "CodecSpec", "architectures"]


def __getattr__(name: str):
    if name == "ARCHITECTURES":  # lazily: it is read from compressai.zoo
        return architectures()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

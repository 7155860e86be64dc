"""What the benchmarks share: the codec they measure."""

from __future__ import annotations


def bench_codec(kind: str):
    """(Codec, description): the shipped demo codec, or bmshj2018-hyperprior at quality-3 widths
    (N=128, M=192) with seeded random weights (same compute and tensor sizes as the zoo codec;
    its rates are not a trained codec's)."""
    import torch
    from compressai.models import ScaleHyperprior

    from latentcache.codec.load import DEMO_CODEC_PATH, codec_from_model, load_codec
    from latentcache.codec.spec import CodecSpec

    if kind == "demo" and DEMO_CODEC_PATH.is_file():
        return load_codec(CodecSpec(source="demo", quality=3)), "demo codec"
    torch.manual_seed(0)
    model = ScaleHyperprior(128, 192)
    with torch.no_grad():
        for layer in (model.g_a[-1], model.h_s[-2]):
            layer.weight.mul_(20)
    model.update(force=True)
    return codec_from_model(model.eval(), CodecSpec(quality=3)), "random-weight q3-width codec"

"""The factorized prior (bmshj2018-factorized): no hyperprior, y through the entropy bottleneck.

::

    y = g_a(x) ─► symbols = round(y - medians) ─► rANS (per-channel CDFs) ─► y_string
    y_string ─► symbols (int) ─► decoder's y_hat = float32(symbols) + medians   (stock decompress)

``medians`` are the bottleneck's per-channel medians (``entropy_bottleneck._get_medians()``),
the same for every image: a store keeps the int16 symbols per sample and the M medians once
(manifest ``latents.channel_medians``), which rebuild the decoder's y_hat bit-exact. There is
no z string and nothing to store for σ̂; ``z_shape`` holds y's shape, the ``shape`` stock
``decompress`` takes.
"""

from __future__ import annotations

import numpy as np
import torch

from latentcache.codec.entropy import (
    Latents,
    as_int16,
    compress_z,
    rans_decode,
    true_bpp,
)
from latentcache.errors import SampleError

__all__ = ["code_factorized", "extract_factorized", "channel_medians"]


def channel_medians(model) -> np.ndarray:
    """(M,) float32: what the decoder adds to each channel's symbols."""
    return model.entropy_bottleneck._get_medians().detach().reshape(-1).float().numpy()


def _medians(eb, n: int) -> torch.Tensor:
    return eb._get_medians().detach().reshape(1, -1, 1, 1).expand(n, -1, 1, 1)


def _decode_symbols(eb, strings: list[bytes], shape) -> torch.Tensor:
    size = (len(strings), eb._quantized_cdf.size(0), *shape)
    return rans_decode(eb, strings, eb._build_indexes(size))


def extract_factorized(model, y_strings, shape) -> dict[str, torch.Tensor | None]:
    """Bytes -> the decoder's ``y_hat`` (symbols + medians) and the ``symbols``."""
    eb = model.entropy_bottleneck
    shape = tuple(int(v) for v in shape)
    with torch.no_grad():
        symbols = _decode_symbols(eb, list(y_strings), shape)
        y_hat = eb.dequantize(symbols, _medians(eb, len(y_strings)), torch.float)
    return {
        "z_hat": None,
        "scales_hat": None,
        "means_hat": None,
        "y_hat": y_hat,
        "symbols": symbols,
        "indexes": None,
    }


def code_factorized(
    model, y: torch.Tensor, sizes: list[tuple[int, int]]
) -> list[Latents | SampleError]:
    """Entropy-code ``y`` as stock ``FactorizedPrior.compress`` does; symbols from the bytes."""
    eb = model.entropy_bottleneck
    shape = tuple(int(v) for v in y.shape[-2:])
    with torch.no_grad():
        y_strings = compress_z(eb, y)
        symbols = _decode_symbols(eb, y_strings, shape)
        expected = eb.quantize(y, "symbols", _medians(eb, y.size(0)))
        _, lik = eb(y, training=False)
        bits = -torch.log2(lik).flatten(1).sum(1)
    out: list[Latents | SampleError] = []
    for i, (h, w) in enumerate(sizes):
        if not torch.equal(symbols[i], expected[i].to(symbols.dtype)):
            bad = int((symbols[i] != expected[i]).sum())
            out.append(
                SampleError(f"entropy-decoded y differs from the encoder's at {bad} positions")
            )
            continue
        try:
            sym = as_int16(symbols[i], "y_hat")
        except SampleError as exc:
            out.append(exc)
            continue
        out.append(
            Latents(
                y_string=y_strings[i],
                z_string=b"",
                z_shape=shape,
                y_hat=sym,
                scales_hat=None,
                scale_index=None,
                z_hat=None,
                bpp=true_bpp([y_strings[i]], h, w),
                bpp_estimate=float(bits[i]) / (h * w),
            )
        )
    return out

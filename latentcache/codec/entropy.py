"""The entropy coder's side of a codec: rANS with cached tables, the bottleneck, h_s.

Shared by every kind of codec (latents.py, factorized.py, autoregressive.py). Byte-identical
to CompressAI's ``EntropyModel.compress/decompress`` (tested), with the CDF tables converted
to Python lists once per model instead of once per image.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch

from latentcache.errors import SampleError

__all__ = [
    "Latents",
    "as_int16",
    "build_indexes",
    "compress_z",
    "decompress_z",
    "hyperprior_params",
    "rans_decode",
    "rans_encode",
    "true_bpp",
]

INT16 = np.iinfo(np.int16)
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class Latents:
    """One image's bitstream, true rate and decoded latents."""

    y_string: bytes
    z_string: bytes
    z_shape: tuple[int, int]
    y_hat: np.ndarray  # (M, h, w) int16, exact: the coded symbols (see means_hat)
    scales_hat: np.ndarray | None  # (M, h, w) float32 as the decoder computes it; None: factorized
    scale_index: np.ndarray | None  # (M, h, w) uint8, the entropy coder's scale-table index
    z_hat: np.ndarray | None  # (N, h/4, w/4) int16; None: factorized
    bpp: float  # 8 * (len(y_string) + len(z_string)) / (H * W), unpadded H, W
    bpp_estimate: float  # -log2 likelihoods / (H * W)
    # Mean-scale and autoregressive codecs: (M, h, w) float32 means_hat; the coded symbols are
    # round(y - means_hat), so the decoder's y_hat is ``y_hat + means_hat`` (float32 add).
    means_hat: np.ndarray | None = None


def true_bpp(strings: list[bytes], height: int, width: int) -> float:
    """CompressAI ``eval_model``'s definition: all strings' bytes * 8 over unpadded pixels."""
    return sum(len(s) for s in strings) * 8.0 / (height * width)


def build_indexes(gaussian_conditional, scales: torch.Tensor) -> torch.Tensor:
    """``GaussianConditional.build_indexes`` in one ``bucketize`` instead of a Python loop.

    CompressAI: ``idx = L-1 - #{s in table[:-1] : scales <= s}`` = ``#{s in table[:-1] : s < scales}``,
    which is ``bucketize(scales, table[:-1], right=False)``. Identical results (tested).
    """
    scales = gaussian_conditional.lower_bound_scale(scales)
    table = gaussian_conditional.scale_table[:-1].to(scales.dtype)
    return torch.bucketize(scales, table, right=False).int()


def _coder_tables(em) -> tuple[list, list, list]:
    """The CDF tables as Python lists, converted once per model instead of once per image.

    CompressAI's ``EntropyModel.compress/decompress`` call ``_quantized_cdf.tolist()`` for every
    image (about 10^5 ints for a GaussianConditional); the C++ coder and its arguments are
    unchanged, so the bytes are identical (tested).
    """
    cdf = em._quantized_cdf
    key = (cdf.data_ptr(), cdf._version, tuple(cdf.shape))
    cached = _TABLES.get(em)
    if cached is None or cached[0] != key:
        cached = (
            key,
            cdf.tolist(),
            em._cdf_length.reshape(-1).int().tolist(),
            em._offset.reshape(-1).int().tolist(),
        )
        _TABLES[em] = cached
    return cached[1:]


def rans_encode(em, symbols: torch.Tensor, indexes: torch.Tensor) -> list[bytes]:
    """``EntropyModel.compress`` for already quantized integer ``symbols`` (B, ...)."""
    cdf, lengths, offsets = _coder_tables(em)
    return [
        em.entropy_coder.encode_with_indexes(
            symbols[i].reshape(-1).int().tolist(),
            indexes[i].reshape(-1).int().tolist(),
            cdf,
            lengths,
            offsets,
        )
        for i in range(symbols.size(0))
    ]


def rans_decode(em, strings: list[bytes], indexes: torch.Tensor) -> torch.Tensor:
    """``EntropyModel.decompress`` before dequantization: integer symbols shaped like ``indexes``."""
    cdf, lengths, offsets = _coder_tables(em)
    out = torch.empty(indexes.shape, dtype=torch.int32)
    for i, s in enumerate(strings):
        values = em.entropy_coder.decode_with_indexes(
            s, indexes[i].reshape(-1).int().tolist(), cdf, lengths, offsets
        )
        out[i] = torch.tensor(values, dtype=torch.int32).reshape(out[i].shape)
    return out


def _z_medians(eb, n: int, spatial: int) -> torch.Tensor:
    medians = eb._extend_ndims(eb._get_medians().detach(), spatial)
    return medians.expand(n, *([-1] * (spatial + 1)))


def compress_z(eb, z: torch.Tensor) -> list[bytes]:
    """``EntropyBottleneck.compress`` with cached tables."""
    indexes = eb._build_indexes(z.size())
    symbols = eb.quantize(z, "symbols", _z_medians(eb, z.size(0), z.dim() - 2))
    return rans_encode(eb, symbols, indexes)


def decompress_z(eb, strings: list[bytes], shape) -> torch.Tensor:
    """``EntropyBottleneck.decompress`` with cached tables."""
    size = (len(strings), eb._quantized_cdf.size(0), *shape)
    symbols = rans_decode(eb, strings, eb._build_indexes(size))
    return eb.dequantize(symbols, _z_medians(eb, len(strings), len(shape)), torch.float)


def hyperprior_params(model, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``h_s(z_hat)`` one image at a time on the CPU (what any decoder computes), as
    ``(scales_hat, means_hat)``; ``means_hat`` is None for a scale-only hyperprior."""
    with torch.no_grad():
        params = torch.cat([model.h_s(z_hat[i : i + 1].float().cpu()) for i in range(len(z_hat))])
    m = int(model.M)
    if params.size(1) == m:
        return params, None
    if params.size(1) == 2 * m:  # MeanScaleHyperprior: gaussian_params.chunk(2, 1)
        scales_hat, means_hat = params.chunk(2, 1)
        return scales_hat.contiguous(), means_hat.contiguous()
    raise SampleError(f"h_s gives {params.size(1)} channels; expected M={m} or 2M={2 * m}")


def as_int16(t: torch.Tensor, what: str) -> np.ndarray:
    a = t.round().to(torch.int64).numpy()
    if a.size and (a.min() < INT16.min or a.max() > INT16.max):
        raise SampleError(
            f"{what} spans [{a.min()}, {a.max()}], outside int16: not stored (never clipped)"
        )
    return a.astype(np.int16)

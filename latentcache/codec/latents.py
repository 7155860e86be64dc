"""Images to bitstreams, bitstreams to latents — without ever running ``g_s``.

::

    x (B, 3, H, W) same-size, padded to /64
      │ g_a (batched; may run on a GPU)        y      (B, M, H/16, W/16)
      │ h_a(|y|)                               z      (B, N, H/64, W/64)
      ▼
    entropy_bottleneck.compress(z) ─► z_strings ─► entropy_bottleneck.decompress ─► z_hat
      (from here on everything is derived from the bytes, on the CPU, in float32)
    h_s(z_hat), one image at a time ─► scales_hat ─► indexes (vectorized build_indexes)
    gaussian_conditional.compress(y, indexes) ─► y_strings
    gaussian_conditional.decompress(y_strings, indexes) ─► y_hat   (checked == round(y))

Mean-scale hyperpriors (mbt2018-mean, CompressAI's ``MeanScaleHyperprior``): ``h_s`` gives 2M
channels, split as CompressAI does into ``scales_hat, means_hat = h_s(z_hat).chunk(2, 1)``;
y is coded as ``round(y - means_hat)``, so ``y_hat = symbols + means_hat`` (not an integer).
:func:`extract_latents` and :func:`encode_batch` take both kinds (``h_a(y)`` instead of
``h_a(|y|)`` for a mean-scale one); the stores hold scale-only codecs (encode refuses others).

``h_s`` runs per image on the CPU because that is what a decoder does: a batched or GPU
convolution may round differently, pick another scale-table index and make the bitstream
undecodable elsewhere (CompressAI issues #54, #279, #309). The bitstreams are exactly what
stock ``model.decompress(strings, shape)`` reads.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from latentcache.errors import SampleError

__all__ = [
    "Latents",
    "build_indexes",
    "pad_image",
    "canvas_offset",
    "encode_batch",
    "analyze_batch",
    "code_batch",
    "extract_latents",
    "decode_y",
    "hyperprior_params",
    "scales_from_z_hat",
    "true_bpp",
    "rans_encode",
    "rans_decode",
    "compress_z",
    "decompress_z",
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
    scales_hat: np.ndarray  # (M, h, w) float32, h_s(z_hat) as the decoder computes it
    scale_index: np.ndarray  # (M, h, w) uint8, the entropy coder's scale-table index
    z_hat: np.ndarray  # (N, h/4, w/4) int16
    bpp: float  # 8 * (len(y_string) + len(z_string)) / (H * W), unpadded H, W
    bpp_estimate: float  # -log2 likelihoods / (H * W)
    # Mean-scale codecs (mbt2018-mean): (M, h, w) float32 means_hat; the coded symbols are
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


def pad_image(x: torch.Tensor, min_div: int = 64) -> torch.Tensor:
    """Zero-pad (centered) to a multiple of ``min_div``, exactly as CompressAI's eval_model."""
    from compressai.ops import compute_padding

    pad, _ = compute_padding(x.shape[-2], x.shape[-1], min_div=min_div)
    return F.pad(x, pad, mode="constant", value=0)


def canvas_offset(height: int, width: int, min_div: int = 64) -> tuple[int, int]:
    """``(pad_top, pad_left)``: where an unpadded ``height`` x ``width`` image sits on the
    canvas :func:`pad_image` pads it to (CompressAI's centred padding). Latent cell (i, j)
    covers canvas pixels [16i, 16i + 16) x [16j, 16j + 16), i.e. image pixels from
    (16i - pad_top, 16j - pad_left); the offset is generally not a multiple of 16."""
    from compressai.ops import compute_padding

    (left, _, top, _), _ = compute_padding(height, width, min_div=min_div)
    return int(top), int(left)


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


def scales_from_z_hat(model, z_hat: torch.Tensor) -> torch.Tensor:
    """``scales_hat`` of :func:`hyperprior_params`."""
    return hyperprior_params(model, z_hat)[0]


def decode_y(
    model,
    y_strings: list[bytes],
    scales_hat: torch.Tensor,
    means_hat: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy-decode ``y_hat`` (float; symbols + ``means_hat`` when given) and its indexes."""
    gc = model.gaussian_conditional
    indexes = build_indexes(gc, scales_hat)
    return gc.dequantize(rans_decode(gc, y_strings, indexes), means_hat, torch.float), indexes


def extract_latents(model, y_strings, z_strings, z_shape) -> dict[str, torch.Tensor | None]:
    """Bytes -> ``z_hat``, ``scales_hat``, ``means_hat`` (None for scale-only hyperpriors) and
    ``y_hat``: everything but ``g_s``."""
    with torch.no_grad():
        z_hat = decompress_z(
            model.entropy_bottleneck, list(z_strings), tuple(int(v) for v in z_shape)
        )
        scales_hat, means_hat = hyperprior_params(model, z_hat)
        y_hat, indexes = decode_y(model, list(y_strings), scales_hat, means_hat)
    return {
        "z_hat": z_hat,
        "scales_hat": scales_hat,
        "means_hat": means_hat,
        "y_hat": y_hat,
        "indexes": indexes,
    }


def _likelihood_bits(
    model, y: torch.Tensor, z: torch.Tensor, scales_hat: torch.Tensor, means_hat=None
) -> torch.Tensor:
    """Per-image -log2 likelihood of y and z (the estimate CompressAI training reports)."""
    _, y_lik = model.gaussian_conditional(y, scales_hat, means=means_hat, training=False)
    _, z_lik = model.entropy_bottleneck(z, training=False)
    bits = lambda lik: -torch.log2(lik).flatten(1).sum(1)  # noqa: E731
    return bits(y_lik) + bits(z_lik)


def _as_int16(t: torch.Tensor, what: str) -> np.ndarray:
    a = t.round().to(torch.int64).numpy()
    if a.size and (a.min() < INT16.min or a.max() > INT16.max):
        raise SampleError(
            f"{what} spans [{a.min()}, {a.max()}], outside int16: not stored (never clipped)"
        )
    return a.astype(np.int16)


def analyze_batch(model, x: torch.Tensor, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``g_a`` and ``h_a`` on ``device`` (batched): ``y`` (B, M, h, w) and ``z`` (B, N, h/4, w/4),
    returned on the CPU in float32, ready for :func:`code_batch`."""
    from compressai.models import MeanScaleHyperprior

    mean_scale = isinstance(model, MeanScaleHyperprior)
    with torch.no_grad():
        g_a, h_a = model.g_a.to(device), model.h_a.to(device)
        y = g_a(x.to(device))
        z = h_a(y if mean_scale else torch.abs(y)).float().cpu()  # as each model's compress()
        return y.float().cpu(), z


def code_batch(
    model, y: torch.Tensor, z: torch.Tensor, sizes: list[tuple[int, int]]
) -> list[Latents | SampleError]:
    """Entropy-code ``y`` and ``z`` and extract the latents from the bytes (CPU, float32)."""
    with torch.no_grad():
        z_strings = compress_z(model.entropy_bottleneck, z)
        z_hat = decompress_z(
            model.entropy_bottleneck, z_strings, tuple(z.shape[-2:])
        )  # from the bytes
        scales_hat, means_hat = hyperprior_params(model, z_hat)
        gc = model.gaussian_conditional
        symbols = gc.quantize(y, "symbols", means_hat)
        y_strings = rans_encode(gc, symbols, build_indexes(gc, scales_hat))
        y_hat, indexes = decode_y(model, y_strings, scales_hat)  # symbols, from the bytes
        est_bits = _likelihood_bits(model, y, z, scales_hat, means_hat)
    y_q = torch.round(y if means_hat is None else y - means_hat)
    coded = (y_hat, y_q, scales_hat, means_hat, indexes, z_hat)
    return [_one(i, *coded, y_strings, z_strings, sizes, est_bits) for i in range(len(sizes))]


def encode_batch(
    model, x: torch.Tensor, sizes: list[tuple[int, int]], device: str = "cpu"
) -> list[Latents | SampleError]:
    """Compress a batch of same-size padded images and extract their latents from the bytes.

    ``x``: (B, 3, Hp, Wp) in [0, 1], padded to /64; ``sizes``: each image's unpadded (H, W).
    Returns one :class:`Latents` per image, or the :class:`SampleError` that image failed with.
    """
    return code_batch(model, *analyze_batch(model, x, device), sizes)


def _one(
    i, y_hat, y_q, scales_hat, means_hat, indexes, z_hat, y_strings, z_strings, sizes, est_bits
):
    h, w = sizes[i]
    try:
        if not torch.equal(y_hat[i], y_q[i]):
            bad = int((y_hat[i] != y_q[i]).sum())
            raise SampleError(
                f"entropy-decoded y_hat differs from the encoder's rounded y at {bad} positions"
            )
        return Latents(
            y_string=y_strings[i],
            z_string=z_strings[i],
            z_shape=(int(z_hat.shape[-2]), int(z_hat.shape[-1])),
            y_hat=_as_int16(y_hat[i], "y_hat"),
            scales_hat=scales_hat[i].numpy().astype(np.float32),
            scale_index=indexes[i].numpy().astype(np.uint8),
            z_hat=_as_int16(z_hat[i], "z_hat"),
            bpp=true_bpp([y_strings[i], z_strings[i]], h, w),
            bpp_estimate=float(est_bits[i]) / (h * w),
            means_hat=None if means_hat is None else means_hat[i].numpy().astype(np.float32),
        )
    except SampleError as exc:
        return exc

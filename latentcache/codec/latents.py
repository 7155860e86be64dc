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

The factorized prior (bmshj2018-factorized) has no hyperprior: y itself goes through the
entropy bottleneck, coded as ``round(y - medians)`` (:mod:`latentcache.codec.factorized`).
The autoregressive codecs (mbt2018, cheng2020-*) take their means and scales from a context
model over the already decoded neighbours, one position at a time
(:mod:`latentcache.codec.autoregressive`).

``h_s`` runs per image on the CPU because that is what a decoder does: a batched or GPU
convolution may round differently, pick another scale-table index and make the bitstream
undecodable elsewhere (CompressAI issues #54, #279, #309). The bitstreams are exactly what
stock ``model.decompress(strings, shape)`` reads.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from latentcache.codec.autoregressive import code_autoregressive, extract_autoregressive
from latentcache.codec.entropy import (
    Latents,
    as_int16,
    build_indexes,
    compress_z,
    decompress_z,
    hyperprior_params,
    rans_decode,
    rans_encode,
    true_bpp,
)
from latentcache.codec.factorized import code_factorized, extract_factorized
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
    "as_int16",
    "likelihood_bits",
    "rans_encode",
    "rans_decode",
    "compress_z",
    "decompress_z",
]


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
    ``y_hat`` (the decoder's: symbols + means_hat): everything but ``g_s``. The factorized
    prior gives ``y_hat`` only; ``z_shape`` is then y's shape, as stock ``decompress`` takes."""
    from compressai.models import JointAutoregressiveHierarchicalPriors

    if not hasattr(model, "h_a"):
        return extract_factorized(model, y_strings, z_shape)
    if isinstance(model, JointAutoregressiveHierarchicalPriors):
        return extract_autoregressive(model, y_strings, z_strings, z_shape)
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


def likelihood_bits(
    model, y: torch.Tensor, z: torch.Tensor, scales_hat: torch.Tensor, means_hat=None
) -> torch.Tensor:
    """Per-image -log2 likelihood of y and z (the estimate CompressAI training reports)."""
    _, y_lik = model.gaussian_conditional(y, scales_hat, means=means_hat, training=False)
    _, z_lik = model.entropy_bottleneck(z, training=False)
    bits = lambda lik: -torch.log2(lik).flatten(1).sum(1)  # noqa: E731
    return bits(y_lik) + bits(z_lik)


def analyze_batch(
    model, x: torch.Tensor, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``g_a`` and ``h_a`` on ``device`` (batched): ``y`` (B, M, h, w) and ``z`` (B, N, h/4, w/4)
    (None for the factorized prior), on the CPU in float32, ready for :func:`code_batch`."""
    from compressai.models import MeanScaleHyperprior

    mean_scale = isinstance(model, MeanScaleHyperprior)
    with torch.no_grad():
        y = model.g_a.to(device)(x.to(device))
        if not hasattr(model, "h_a"):  # FactorizedPrior
            return y.float().cpu(), None
        z = model.h_a.to(device)(y if mean_scale else torch.abs(y)).float().cpu()  # as compress()
        return y.float().cpu(), z


def code_batch(
    model, y: torch.Tensor, z: torch.Tensor | None, sizes: list[tuple[int, int]]
) -> list[Latents | SampleError]:
    """Entropy-code ``y`` and ``z`` and extract the latents from the bytes (CPU, float32)."""
    from compressai.models import JointAutoregressiveHierarchicalPriors

    if z is None:
        return code_factorized(model, y, sizes)
    if isinstance(model, JointAutoregressiveHierarchicalPriors):
        return code_autoregressive(model, y, z, sizes)
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
        est_bits = likelihood_bits(model, y, z, scales_hat, means_hat)
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
            y_hat=as_int16(y_hat[i], "y_hat"),
            scales_hat=scales_hat[i].numpy().astype(np.float32),
            scale_index=indexes[i].numpy().astype(np.uint8),
            z_hat=as_int16(z_hat[i], "z_hat"),
            bpp=true_bpp([y_strings[i], z_strings[i]], h, w),
            bpp_estimate=float(est_bits[i]) / (h * w),
            means_hat=None if means_hat is None else means_hat[i].numpy().astype(np.float32),
        )
    except SampleError as exc:
        return exc

"""Autoregressive codecs (mbt2018, cheng2020-*): CompressAI's own serial coder, observed.

::

    y, z ─► z_string (bottleneck) ─► z_hat ─► params = h_s(z_hat)      (per image, CPU)
    stock _compress_ar(y, params): position by position, the context model (masked 5x5 conv)
         over the y_hat decoded so far + params ─► entropy_parameters ─► means, scales
         ─► y_string; the encoder's y_hat = round(y - means) + means
    stock _decompress_ar(y_string, params), entropy_parameters observed by a forward hook:
         the decoder's y_hat, and the means and scales it used at each position

Nothing is re-implemented: the bytes and y_hat are CompressAI's, and the means and scales are
the very tensors its decoder computed (a forward hook on ``entropy_parameters``). A store keeps
the int16 symbols ``round(y_hat - means_hat)``, ``means_hat`` (float32) and σ̂ in the chosen
representation; ``float32(symbols) + means_hat`` is checked to equal the decoder's y_hat
before anything is kept. Running the context model once on the final y_hat (a full masked
convolution) would give the same parameters only up to float rounding, so they are stored,
not recomputed. The coder is serial per image (seconds for a zoo model on a CPU core):
encode's Dask workers run images in parallel.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from latentcache.codec.entropy import (
    Latents,
    as_int16,
    build_indexes,
    compress_z,
    decompress_z,
    hyperprior_params,
    true_bpp,
)
from latentcache.errors import SampleError

__all__ = ["code_autoregressive", "extract_autoregressive", "decode_ar"]

KERNEL = 5  # CompressAI's context model kernel (mbt2018, cheng2020)
PAD = (KERNEL - 1) // 2
STRIDE = 4  # z to y


@contextlib.contextmanager
def _observed(module: torch.nn.Module, sink: list):
    handle = module.register_forward_hook(lambda _m, _i, out: sink.append(out.detach().clone()))
    try:
        yield
    finally:
        handle.remove()


def decode_ar(model, y_string: bytes, params: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stock ``_decompress_ar`` of one image: y_hat (1, M, h, w) and the scales_hat and
    means_hat (1, M, h, w) its decoder used. ``params``: h_s(z_hat) of that image (1, 2M, h, w)."""
    h, w = int(params.shape[-2]), int(params.shape[-1])
    buf = torch.zeros((1, int(model.M), h + 2 * PAD, w + 2 * PAD))
    seen: list[torch.Tensor] = []
    with torch.no_grad(), _observed(model.entropy_parameters, seen):
        model._decompress_ar(y_string, buf, params, h, w, KERNEL, PAD)
    if len(seen) != h * w:
        raise SampleError(f"the context model ran {len(seen)} times for {h}x{w} positions")
    gp = torch.cat(seen).reshape(h, w, -1).permute(2, 0, 1)[None]  # (1, 2M, h, w)
    scales_hat, means_hat = gp.chunk(2, 1)
    y_hat = F.pad(buf, (-PAD, -PAD, -PAD, -PAD))
    return {
        "y_hat": y_hat,
        "scales_hat": scales_hat.contiguous(),
        "means_hat": means_hat.contiguous(),
    }


def _encode_ar(model, y: torch.Tensor, params: torch.Tensor) -> tuple[bytes, torch.Tensor]:
    """Stock ``_compress_ar`` of one image: (y_string, the encoder's y_hat (1, M, h, w))."""
    h, w = int(params.shape[-2]), int(params.shape[-1])
    buf = F.pad(y, (PAD, PAD, PAD, PAD))
    with torch.no_grad():
        string = model._compress_ar(buf, params, h, w, KERNEL, PAD)
    return string, F.pad(buf, (-PAD, -PAD, -PAD, -PAD))


def extract_autoregressive(model, y_strings, z_strings, z_shape) -> dict[str, torch.Tensor | None]:
    """Bytes -> z_hat, scales_hat, means_hat, y_hat (the decoder's) and the scale indexes."""
    with torch.no_grad():
        shape = tuple(int(v) for v in z_shape)
        z_hat = decompress_z(model.entropy_bottleneck, list(z_strings), shape)
        params, _ = hyperprior_params_full(model, z_hat)
        rows = [decode_ar(model, s, params[i : i + 1]) for i, s in enumerate(y_strings)]
    out = {k: torch.cat([r[k] for r in rows]) for k in ("y_hat", "scales_hat", "means_hat")}
    out["z_hat"] = z_hat
    out["indexes"] = build_indexes(model.gaussian_conditional, out["scales_hat"])
    return out


def hyperprior_params_full(model, z_hat: torch.Tensor) -> tuple[torch.Tensor, None]:
    """h_s(z_hat) per image on the CPU, all 2M channels (the context model takes them whole)."""
    scales, means = hyperprior_params(model, z_hat)
    return torch.cat([scales, means], dim=1), None


def _one(model, y, z_hat_i, params_i, z_string, size, z_lik_bits) -> Latents:
    y_string, y_enc = _encode_ar(model, y, params_i)
    dec = decode_ar(model, y_string, params_i)
    if not torch.equal(dec["y_hat"], y_enc):
        bad = int((dec["y_hat"] != y_enc).sum())
        raise SampleError(f"entropy-decoded y_hat differs from the encoder's at {bad} positions")
    means = dec["means_hat"]
    symbols = torch.round(dec["y_hat"] - means)
    if not torch.equal(symbols + means, dec["y_hat"]):
        raise SampleError("y_hat is not symbols + means_hat in float32: not stored")
    scales = dec["scales_hat"]
    _, y_lik = model.gaussian_conditional(y, scales, means=means, training=False)
    bits = float(-torch.log2(y_lik).sum()) + z_lik_bits
    h, w = size
    return Latents(
        y_string=y_string,
        z_string=z_string,
        z_shape=(int(z_hat_i.shape[-2]), int(z_hat_i.shape[-1])),
        y_hat=as_int16(symbols[0], "y_hat"),
        scales_hat=scales[0].numpy().astype(np.float32),
        scale_index=build_indexes(model.gaussian_conditional, scales)[0].numpy().astype(np.uint8),
        z_hat=as_int16(z_hat_i[0], "z_hat"),
        bpp=true_bpp([y_string, z_string], h, w),
        bpp_estimate=bits / (h * w),
        means_hat=means[0].numpy().astype(np.float32),
    )


def code_autoregressive(
    model, y: torch.Tensor, z: torch.Tensor, sizes: list[tuple[int, int]]
) -> list[Latents | SampleError]:
    """Entropy-code a batch one image at a time with CompressAI's serial coder, then decode
    each from its bytes with the context model observed (module docstring)."""
    eb = model.entropy_bottleneck
    with torch.no_grad():
        z_strings = compress_z(eb, z)
        z_hat = decompress_z(eb, z_strings, tuple(z.shape[-2:]))
        params, _ = hyperprior_params_full(model, z_hat)
        _, z_lik = eb(z, training=False)
        z_bits = -torch.log2(z_lik).flatten(1).sum(1)
    out: list[Latents | SampleError] = []
    for i, size in enumerate(sizes):
        try:
            out.append(
                _one(
                    model,
                    y[i : i + 1],
                    z_hat[i : i + 1],
                    params[i : i + 1],
                    z_strings[i],
                    size,
                    float(z_bits[i]),
                )
            )
        except SampleError as exc:
            out.append(exc)
    return out

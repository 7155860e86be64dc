"""Bitstream -> latents equals encoder latents, and stock CompressAI reads our bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentcache.codec.latents import (
    build_indexes,
    encode_batch,
    extract_latents,
    pad_image,
    true_bpp,
)


def _batch(images):
    return torch.stack(
        [pad_image(torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255) for a in images]
    )


@pytest.fixture(scope="module")
def encoded(tiny_model, photo_images):
    same = [a[:128, :192] for a in photo_images]  # one padded size -> one batch
    return same, encode_batch(tiny_model, _batch(same), [a.shape[:2] for a in same])


def test_vectorized_build_indexes_equals_compressai(tiny_model):
    gc = tiny_model.gaussian_conditional
    g = torch.Generator().manual_seed(1)
    scales = torch.rand(2, 24, 9, 7, generator=g) * 300
    # exact table values (the boundary case), values below the bound and above the top
    table = gc.scale_table.flatten()
    scales.view(-1)[: len(table)] = table
    scales[1, 0, 0, 0], scales[1, 0, 0, 1] = 0.0, 1e6
    assert torch.equal(build_indexes(gc, scales), gc.build_indexes(scales))


def test_latents_are_real_and_nontrivial(encoded):
    _, out = encoded
    for lat in out:
        assert lat.y_hat.dtype == np.int16 and lat.y_hat.std() > 0
        assert lat.scales_hat.dtype == np.float32 and lat.scales_hat.shape == lat.y_hat.shape
        assert lat.y_hat.shape[-2:] == (8, 12)  # 128x192 -> /16


def test_extracted_latents_equal_encoder_latents(tiny_model, encoded):
    images, out = encoded
    with torch.no_grad():
        y = tiny_model.g_a(_batch(images))
    for i, lat in enumerate(out):
        np.testing.assert_array_equal(lat.y_hat, torch.round(y[i]).numpy().astype(np.int16))
        again = extract_latents(tiny_model, [lat.y_string], [lat.z_string], lat.z_shape)
        np.testing.assert_array_equal(again["y_hat"][0].numpy().astype(np.int16), lat.y_hat)
        np.testing.assert_array_equal(again["scales_hat"][0].numpy(), lat.scales_hat)


def test_stock_compressai_decodes_our_bitstreams(tiny_model, encoded):
    """The steps of stock ScaleHyperprior.decompress, with its own Python-loop build_indexes."""
    images, out = encoded
    m = tiny_model
    for lat, img in zip(out, images, strict=True):
        with torch.no_grad():
            z_hat = m.entropy_bottleneck.decompress([lat.z_string], lat.z_shape)
            scales_hat = m.h_s(z_hat)
            indexes = m.gaussian_conditional.build_indexes(scales_hat)
            y_hat = m.gaussian_conditional.decompress([lat.y_string], indexes, z_hat.dtype)
            full = m.decompress([[lat.y_string], [lat.z_string]], lat.z_shape)
        np.testing.assert_array_equal(y_hat[0].numpy().astype(np.int16), lat.y_hat)
        assert full["x_hat"].shape[-2:] == (128, 192)
        assert true_bpp([lat.y_string, lat.z_string], *img.shape[:2]) == lat.bpp


def test_bpp_is_bytes_over_unpadded_pixels(encoded):
    images, out = encoded
    for lat, img in zip(out, images, strict=True):
        h, w = img.shape[:2]
        assert lat.bpp == pytest.approx(8 * (len(lat.y_string) + len(lat.z_string)) / (h * w))
        assert 0 < lat.bpp_estimate < 10 * lat.bpp + 1


def test_batched_and_single_encoding_decode_the_same(tiny_model, encoded):
    images, out = encoded
    single = encode_batch(tiny_model, _batch(images[:1]), [images[0].shape[:2]])[0]
    np.testing.assert_array_equal(single.y_hat, out[0].y_hat)


def test_cached_table_coding_gives_compressai_bytes(tiny_model, photo_images):
    """Our coder calls (tables converted once) write exactly the bytes CompressAI writes."""
    from latentcache.codec.latents import compress_z, decompress_z, rans_encode

    m = tiny_model
    x = _batch([a[:128, :192] for a in photo_images])
    with torch.no_grad():
        y = m.g_a(x)
        z = m.h_a(torch.abs(y))
        assert compress_z(m.entropy_bottleneck, z) == m.entropy_bottleneck.compress(z)
        z_strings = m.entropy_bottleneck.compress(z)
        z_hat = m.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        assert torch.equal(
            decompress_z(m.entropy_bottleneck, z_strings, tuple(z.shape[-2:])), z_hat
        )
        gc = m.gaussian_conditional
        indexes = gc.build_indexes(torch.cat([m.h_s(z_hat[i : i + 1]) for i in range(len(z_hat))]))
        assert rans_encode(gc, gc.quantize(y, "symbols"), indexes) == gc.compress(y, indexes)
        assert m.compress(x[:1])["strings"][0] == rans_encode(
            gc, gc.quantize(y[:1], "symbols"), indexes[:1]
        )

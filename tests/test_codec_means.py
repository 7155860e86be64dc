"""mbt2018-mean at the codec layer: means_hat (and y_hat around it) read from the bytes.

A small real MeanScaleHyperprior (untrained, ``update(force=True)``) codes a real photo with
stock ``compress``; :func:`extract_latents` reads ``z_hat``, ``scales_hat``, ``means_hat`` and
``y_hat`` from those bytes, and stock ``decompress`` of the same bitstream agrees with them.
"""

from __future__ import annotations

import pytest
import torch

from latentcache.codec.latents import extract_latents, pad_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mean_scale_model():
    from compressai.models import MeanScaleHyperprior

    torch.manual_seed(0)
    model = MeanScaleHyperprior(16, 24)
    with torch.no_grad():  # spread y and the Gaussian parameters like a trained codec
        for layer in (model.g_a[-1], model.h_s[-1]):
            layer.weight.mul_(40.0)
            layer.bias.mul_(40.0)
    model.update(force=True)
    return model.eval()


@pytest.fixture(scope="module")
def photo(photo_images) -> torch.Tensor:
    rgb = torch.from_numpy(photo_images[1]).permute(2, 0, 1).float().div(255)  # (3, 150, 200)
    return pad_image(rgb[None])  # (1, 3, 192, 256)


def test_means_hat_from_the_bytes_matches_stock_decompress(mean_scale_model, photo):
    model = mean_scale_model
    with torch.no_grad():
        out = model.compress(photo)  # stock CompressAI
        (y_string,), (z_string,) = out["strings"]
        got = extract_latents(model, [y_string], [z_string], tuple(out["shape"]))

        # CompressAI's MeanScaleHyperprior.decompress, step by step, on the same bytes
        z_hat = model.entropy_bottleneck.decompress([z_string], out["shape"])
        scales_hat, means_hat = model.h_s(z_hat).chunk(2, 1)
        indexes = model.gaussian_conditional.build_indexes(scales_hat)
        y_hat = model.gaussian_conditional.decompress([y_string], indexes, means=means_hat)
        x_hat = model.decompress(out["strings"], out["shape"])["x_hat"]

        assert torch.equal(got["z_hat"], z_hat)
        assert torch.equal(got["scales_hat"], scales_hat)
        assert torch.equal(got["means_hat"], means_hat)
        assert torch.equal(got["y_hat"], y_hat)
        assert torch.equal(model.g_s(got["y_hat"]).clamp_(0, 1), x_hat)  # the same picture

        y = model.g_a(photo)
    offset = got["y_hat"] - got["means_hat"]  # the coded symbols, up to float32 rounding
    symbols = torch.round(offset)
    assert (offset - symbols).abs().max() < 1e-4
    assert torch.equal(symbols, torch.round(y - got["means_hat"]))  # round(y - means_hat)
    assert got["means_hat"].shape == got["scales_hat"].shape == y.shape
    assert got["means_hat"].abs().max() > 1 and (got["y_hat"] != torch.round(got["y_hat"])).any()


def test_scale_only_hyperprior_has_no_means(tiny_model, photo):
    with torch.no_grad():
        out = tiny_model.compress(photo)
    got = extract_latents(tiny_model, out["strings"][0], out["strings"][1], tuple(out["shape"]))
    assert got["means_hat"] is None and torch.equal(got["y_hat"], torch.round(got["y_hat"]))


def test_encode_batch_codes_mean_scale_as_stock_compress(mean_scale_model, photo):
    """latentcache's encoder on a mean-scale codec: stock compress's bytes, means_hat beside."""
    from latentcache.codec.latents import encode_batch

    model = mean_scale_model
    (lat,) = encode_batch(model, photo, [(150, 200)])
    assert not isinstance(lat, Exception), lat
    with torch.no_grad():
        out = model.compress(photo)
        got = extract_latents(model, out["strings"][0], out["strings"][1], tuple(out["shape"]))
    assert lat.y_string == out["strings"][0][0] and lat.z_string == out["strings"][1][0]
    assert lat.means_hat is not None and torch.equal(
        torch.from_numpy(lat.means_hat), got["means_hat"][0]
    )
    y_hat = torch.from_numpy(lat.y_hat).float() + torch.from_numpy(lat.means_hat)  # symbols + means
    assert torch.equal(y_hat, got["y_hat"][0])
    assert lat.bpp == (len(lat.y_string) + len(lat.z_string)) * 8 / (150 * 200)

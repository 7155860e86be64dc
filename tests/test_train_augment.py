"""Latent augmentation: one crop and one flip shared by y_hat and scales_hat, a
deterministic center crop for evaluation, and scales_hat normalized in the log domain."""

from __future__ import annotations

import pytest
import torch

from latentcache.errors import ConfigError
from latentcache.train.augment import (
    AugmentConfig,
    LatentStats,
    LatentTransform,
    apply_crop_flip,
    center_crop,
    crop_flip_params,
)

B, M, H, W = 16, 3, 8, 8
UNIT = LatentStats(0.0, 1.0, 0.0, 1.0)


def _positional() -> dict[str, torch.Tensor]:
    """y_hat = a code unique per (channel, row, column); scales_hat = exp(code), so the
    normalized scales (log, unit stats) equal y_hat exactly where both are aligned."""
    code = torch.arange(M * H * W, dtype=torch.int16).view(1, M, H, W).repeat(B, 1, 1, 1)
    return {"y_hat": code, "scales_hat": torch.exp(code.float() / 64)}


def _transform(**kw) -> LatentTransform:
    stats = LatentStats(0.0, 1.0, 0.0, 1.0 / 64)  # log(scales) * 64 == code
    return LatentTransform(("y_hat", "scales_hat"), stats, AugmentConfig(**kw))


@pytest.mark.parametrize("resize", [None, 12])
def test_crop_and_flip_are_shared_by_y_hat_and_scales_hat(resize) -> None:
    y, s = _transform(resize=resize, crop=6, flip=True)(
        _positional(), True, torch.Generator().manual_seed(0)
    )
    assert y.shape == s.shape == (B, M, 6, 6)
    torch.testing.assert_close(y, s, rtol=1e-4, atol=1e-3)


def test_random_crops_differ_between_samples_and_flips_happen() -> None:
    y, _ = _transform(resize=None, crop=5, flip=True)(
        _positional(), True, torch.Generator().manual_seed(1)
    )
    corners = {int(v) for v in y[:, 0, 0, 0]}
    assert len(corners) > 3  # different offsets and flips across the batch
    flipped = (y[:, 0, 0, 1] < y[:, 0, 0, 0]).sum()
    assert 0 < flipped < B


def test_each_output_is_a_crop_of_its_input_at_the_drawn_place() -> None:
    x = torch.randn(B, M, H, W)
    g = torch.Generator().manual_seed(2)
    top, left, flipped = crop_flip_params(B, H, W, 5, True, g)
    out = apply_crop_flip(x, top, left, flipped, 5)
    for i in range(B):
        ref = x[i, :, top[i] : top[i] + 5, left[i] : left[i] + 5]
        torch.testing.assert_close(out[i], ref.flip(-1) if flipped[i] else ref)


def test_evaluation_is_a_deterministic_center_crop() -> None:
    t = _transform(resize=None, crop=4, flip=True)
    a, b = t(_positional(), False), t(_positional(), False)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[0], center_crop(_positional()["y_hat"].float(), 4))
    assert center_crop(torch.zeros(1, 1, 8, 8), 4).shape[-2:] == (4, 4)


def test_same_generator_seed_gives_the_same_augmentation() -> None:
    t = _transform(resize=10, crop=8, flip=True)
    a = t(_positional(), True, torch.Generator().manual_seed(5))[0]
    b = t(_positional(), True, torch.Generator().manual_seed(5))[0]
    torch.testing.assert_close(a, b)


def test_scales_are_log_standardized_with_store_stats() -> None:
    scales = torch.tensor([0.11, 1.0, 256.0]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    stats = LatentStats(0.0, 1.0, log_scales_mean=1.0, log_scales_std=2.0)
    (s,) = LatentTransform(("scales_hat",), stats, AugmentConfig(None, None, False))(
        {"scales_hat": scales}, False
    )
    expected = (torch.log(torch.tensor([0.11, 1.0, 256.0])) - 1.0) / 2.0
    torch.testing.assert_close(s[0, :, 0, 0], expected)


def test_per_channel_stats_and_constant_channels() -> None:
    stats = LatentStats.from_dict(
        {
            "y_hat_mean": [1.0, 2.0],
            "y_hat_std": [1.0, 0.0],
            "log_scales_mean": 0,
            "log_scales_std": 1,
        }
    )
    y = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).expand(1, 2, 3, 3)
    (out,) = LatentTransform(("y_hat",), stats, AugmentConfig(None, None, False))(
        {"y_hat": y}, False
    )
    assert torch.isfinite(out).all() and out.abs().max() == 0
    assert LatentStats.from_dict(stats.to_dict()) == stats


def test_bad_configs_name_the_value() -> None:
    with pytest.raises(ConfigError, match="crop=40 is larger than resize=32"):
        AugmentConfig(resize=32, crop=40)
    with pytest.raises(ConfigError, match="lack"):
        LatentStats.from_dict({"y_hat_mean": 0})
    with pytest.raises(ConfigError, match="crop=9 is larger than the latent"):
        _transform(resize=None, crop=9)(_positional(), True)

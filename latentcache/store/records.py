"""What one encoded sample is, as the store writers see it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

__all__ = ["EncodedSample", "SampleFailure"]


@dataclass(frozen=True)
class EncodedSample:
    """An image's bitstream, true bpp and latents, with where it came from."""

    key: str
    label: int
    split: str
    path: str
    source_sha256: str
    image_size: tuple[int, int]  # (H, W) after EXIF orientation, unpadded
    bpp: float  # true: 8 * bytes of all strings / (H * W)
    bpp_estimate: float  # from the likelihoods
    y_string: bytes
    z_string: bytes
    z_shape: tuple[int, int]
    y_hat: np.ndarray  # (M, h, w) int16: the coded symbols (the decoder adds means_hat)
    scales: np.ndarray | None  # the stored representation (see store.scales); None: factorized
    canvas_offset: tuple[int, int] = (0, 0)  # (pad_top, pad_left) on the codec's padded canvas
    targets: dict = field(default_factory=dict)  # the task's arrays (segmentation: "mask")
    means_hat: np.ndarray | None = None  # (M, h, w) float32: mean-scale, autoregressive codecs

    def arrays(self, scales_name: str) -> dict[str, np.ndarray]:
        """The per-sample latent arrays stored, by array name."""
        out = {"y_hat": self.y_hat}
        if self.scales is not None:
            out[scales_name] = self.scales
        if self.means_hat is not None:
            out["means_hat"] = self.means_hat
        return out

    @property
    def latent_shape(self) -> tuple[int, int]:
        return int(self.y_hat.shape[-2]), int(self.y_hat.shape[-1])

    def info(self) -> dict:
        """The per-sample JSON of the WebDataset layout."""
        return {
            "key": self.key,
            "label": self.label,
            "split": self.split,
            "path": self.path,
            "source_sha256": self.source_sha256,
            "image_size": list(self.image_size),
            "canvas_offset": list(self.canvas_offset),
            "latent_shape": list(self.latent_shape),
            "z_shape": list(self.z_shape),
            "bpp": self.bpp,
            "bpp_estimate": self.bpp_estimate,
            "bytes": len(self.y_string) + len(self.z_string),
        }

    def info_json(self) -> bytes:
        return json.dumps(self.info(), sort_keys=True).encode()


@dataclass(frozen=True)
class SampleFailure:
    """A sample that was indexed but not stored, and why."""

    key: str
    path: str
    split: str
    reason: str

    def to_dict(self) -> dict:
        return {"key": self.key, "path": self.path, "split": self.split, "reason": self.reason}

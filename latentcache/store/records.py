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
    y_hat: np.ndarray  # (M, h, w) int16
    scales: np.ndarray  # the stored representation (see store.scales)
    canvas_offset: tuple[int, int] = (0, 0)  # (pad_top, pad_left) on the codec's padded canvas
    targets: dict = field(default_factory=dict)  # the task's arrays (segmentation: "mask")

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

"""How ``scales_hat`` is stored, and how a reader turns it back into float ``scales_hat``.

| repr      | array       | dtype   | read back as                               | exact? |
|-----------|-------------|---------|--------------------------------------------|--------|
| index     | scales_hat  | uint8   | ``scale_table[index]`` (what the coder used) | no: the upper edge of its bin |
| float16   | scales_hat  | float16 | float32 cast                               | to 3 significant digits |
| float32   | scales_hat  | float32 | as stored                                  | yes |
| z_hat     | z_hat       | int16   | ``h_s(z_hat)`` with the store's codec      | yes, but runs part of the codec |

The default is ``index``: with ``y_hat``, measured at 5.94x the bitstream bytes against 23x
for float16 (README, "Scales representation"). ``z_hat`` is the compact option (``y_hat`` +
``z_hat`` 1.28x the bitstream) for readers that can load the codec's ``h_s``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SCALES_REPRS",
    "DEFAULT_SCALES_REPR",
    "scales_array_name",
    "scales_dtype",
    "scales_payload",
    "stored_arrays",
    "scales_to_float",
    "scale_floor",
    "DEFAULT_SCALE_FLOOR",
]

SCALES_REPRS = ("index", "float16", "float32", "z_hat")
DEFAULT_SCALES_REPR = "index"
DEFAULT_SCALE_FLOOR = 0.11  # GaussianConditional(scale_bound=0.11), CompressAI's default
_DTYPES = {"index": np.uint8, "float16": np.float16, "float32": np.float32, "z_hat": np.int16}


def scales_array_name(repr_: str) -> str:
    return "z_hat" if repr_ == "z_hat" else "scales_hat"


def scales_dtype(repr_: str) -> np.dtype:
    return np.dtype(_DTYPES[repr_])


def scale_floor(model) -> float:
    """The codec's lower bound on sigma-hat (``gaussian_conditional.lower_bound_scale``).

    The entropy coder never uses a smaller scale, so every reader floors sigma-hat here: the
    exact zeros from h_s's final ReLU (float16/float32/z_hat stores) then mean what the index
    representation (``scale_table[index]`` >= this bound) says they mean.
    """
    gc = getattr(model, "gaussian_conditional", None)  # None: the factorized prior
    bound = getattr(getattr(gc, "lower_bound_scale", None), "bound", None)
    return float(bound.reshape(-1)[0]) if bound is not None else DEFAULT_SCALE_FLOOR


def stored_arrays(inputs, repr_: str) -> tuple[str, ...]:
    """The per-sample arrays a store of ``inputs`` keeps: y_hat, the scales representation
    (when σ̂ is an input) and means_hat (when μ̂ is)."""
    out = ["y_hat"]
    if "scales_hat" in inputs:
        out.append(scales_array_name(repr_))
    if "means_hat" in inputs:
        out.append("means_hat")
    return tuple(out)


def scales_payload(latents, repr_: str) -> np.ndarray | None:
    """The array stored for one image's scales (``latents`` is a codec.latents.Latents);
    None for a codec without σ̂ (the factorized prior)."""
    if latents.scales_hat is None:
        return None
    if repr_ == "index":
        return latents.scale_index
    if repr_ == "z_hat":
        return latents.z_hat
    return latents.scales_hat.astype(_DTYPES[repr_])


def scales_to_float(
    stored: np.ndarray, repr_: str, scale_table: np.ndarray, h_s=None, z_shapes=None
) -> np.ndarray:
    """Float32 ``scales_hat`` from the stored representation (any leading batch dims).

    ``z_hat``: each row is cropped to its real ``z_shapes[i]`` (CompressAI's ``shape``)
    before ``h_s`` runs, exactly what a decoder of that one bitstream computes, and the
    result is zero-padded back to the row's stored size (4x the stored z_hat).
    Without ``z_shapes`` every row is taken as unpadded.
    """
    if repr_ == "index":
        return np.asarray(scale_table, dtype=np.float32)[stored]
    if repr_ in ("float16", "float32"):
        return stored.astype(np.float32)
    if h_s is None:
        raise ValueError(
            "this store keeps z_hat: pass codec= to open_store to recompute scales_hat with h_s"
        )
    single = stored.ndim == 3
    rows = stored[None] if single else stored
    shapes = None if z_shapes is None else np.asarray(z_shapes).reshape(len(rows), 2)
    out = np.stack(
        [_h_s_row(h_s, rows[i], None if shapes is None else shapes[i]) for i in range(len(rows))]
    )
    return out[0] if single else out


def _h_s_row(h_s, z_hat: np.ndarray, z_shape) -> np.ndarray:
    """``h_s`` on one (N, zh, zw) row cropped to ``z_shape``; padded back to (M, 4zh, 4zw)."""
    import torch

    zh, zw = z_hat.shape[-2:]
    h, w = (zh, zw) if z_shape is None else (int(z_shape[0]), int(z_shape[1]))
    if not (0 < h <= zh and 0 < w <= zw):
        raise ValueError(f"z_shape {(h, w)} outside the stored z_hat ({zh}x{zw})")
    z = torch.from_numpy(z_hat[:, :h, :w].astype(np.float32))[None]
    with torch.no_grad():
        scales = h_s(z)[0].numpy()  # (M, 4h, 4w)
    out = np.zeros((scales.shape[0], 4 * zh, 4 * zw), dtype=np.float32)
    out[:, : scales.shape[1], : scales.shape[2]] = scales
    return out

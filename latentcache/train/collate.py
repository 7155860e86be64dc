"""Batches from samples: latents decoded straight into one (shared-memory) tensor per field.

::

    [RawSample x B] ─► same real size, stored at it (the usual case):
                         a (B, *shape) buffer in shared memory inside a worker (from
                         a BufferPool when recycling: reused once the batch is released),
                         each latent decoded into its slot (no stacking copy)
                     └► mixed sizes: decode, crop to latent_shape, resize to ``resize``
                         (scales in the log domain), as :class:`LatentCollate`
    ─► {"y_hat": int16, "scales_hat": uint8 scale index | float16 | float32,
        "label": int64, "key": [str], "lease": int (recycling only)}

    a task with target arrays (segmentation): latents zero-padded to the batch's largest
    latent, never resized (each decoded straight into its row when stored at that size,
    only the padding zeroed); the task's ``collate_targets`` adds its tensors (a mask
    placed on each sample's codec canvas, 255 off the image), filling the buffers its
    ``target_layout`` names; latents and those buffers recycled as above

A uint8 ``scales_hat`` indexes CompressAI's scale table (``get_scale_table()``), which the
store's manifest must hold; :func:`latentcache.train.augment.normalize_inputs` looks it up
on the training device. A store with another table gets float32 ``scales_hat`` here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import get_worker_info

from latentcache.errors import ConfigError

__all__ = [
    "LatentCollate",
    "BatchAssembler",
    "ImageTarget",
    "BufferPool",
    "default_scale_table",
    "release",
    "POOL_SIZE",
]


def default_scale_table() -> np.ndarray:
    """CompressAI's scale table (float32), the one a uint8 ``scales_hat`` indexes."""
    from compressai.models.google import get_scale_table

    return get_scale_table().numpy().astype(np.float32)


def _crop_real(a: np.ndarray, hw) -> np.ndarray:
    return a[..., : int(hw[0]), : int(hw[1])]


def _resize_one(a: np.ndarray, size: int, log: bool) -> torch.Tensor:
    from latentcache.train.augment import resize_latents

    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]
    if log:
        return torch.exp(resize_latents(torch.log(x.clamp_min(1e-6)), size))[0]
    return resize_latents(x, size)[0]


class LatentCollate:
    """Stack decoded samples into a batch; different real sizes are resized to ``resize``.

    Same-size batches keep the stored dtypes; mixed ones become float32, ``scales_hat``
    resized in the log domain (where the model sees it).
    """

    def __init__(self, fields: tuple[str, ...], resize: int | None) -> None:
        self.fields, self.resize = tuple(fields), resize

    def __call__(self, samples: list[dict]) -> dict:
        shapes = {tuple(int(v) for v in s["latent_shape"]) for s in samples}
        batch = {
            "label": torch.as_tensor(np.array([s["label"] for s in samples]), dtype=torch.long),
            "key": [str(s["key"]) for s in samples],
        }
        for f in self.fields:
            batch[f] = self._stack(samples, f, len(shapes) == 1)
        return batch

    def _stack(self, samples: list[dict], field: str, uniform: bool) -> torch.Tensor:
        cropped = [_crop_real(s[field], s["latent_shape"]) for s in samples]
        if uniform:
            return torch.from_numpy(np.ascontiguousarray(np.stack(cropped)))
        if self.resize is None:
            sizes = sorted({c.shape[-2:] for c in cropped})
            raise ConfigError(f"batch mixes latent sizes {sizes}; set resize to train on them")
        return torch.stack([_resize_one(c, self.resize, field == "scales_hat") for c in cropped])


def _empty(shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
    """An uninitialised tensor; in a DataLoader worker, allocated in shared memory (as
    torch's default_collate does), so handing it to the main process copies nothing."""
    like = torch.from_numpy(np.empty(0, dtype))
    if get_worker_info() is None:
        return torch.empty(shape, dtype=like.dtype)
    storage = like._typed_storage()._new_shared(math.prod(shape), device=like.device)
    return like.new(storage).view(shape)


def _decode(p) -> np.ndarray:
    a = np.empty(p.shape, p.dtype)
    p.decode_into(a)
    return a


POOL_SIZE = 4  # batch buffers one producer recycles: its prefetched batches + one in use
FREE, IN_USE = 1, 0  # lease values; the consumer sets FREE, the producer IN_USE


class BufferPool:
    """Batch buffers a producer (a DataLoader worker, or the main process) reuses once the
    consumer has released them: allocating fresh shared memory for every batch costs more
    than decoding it (the kernel zeroes every page).

    ``leases``: (producers, POOL_SIZE) int32 in shared memory, created before the workers
    start. A buffer is handed out as lease ``slot * POOL_SIZE + k`` and marked IN_USE; only
    the consumer's :func:`release` marks it FREE again, so a batch that was never released
    is never overwritten (the pool then allocates, as without it). Each field's buffer is
    flat bytes, viewed in the shape and dtype asked for: batches whose latent size varies
    (padded segmentation batches) reuse the same memory, which only ever grows.
    """

    def __init__(self, leases: torch.Tensor, slot: int, rows: int) -> None:
        self.leases, self.slot, self.rows = leases[slot], slot, rows
        self.buffers: list[dict[str, torch.Tensor] | None] = [None] * POOL_SIZE

    def take(self, layout: dict[str, tuple], n: int) -> tuple[int, dict[str, torch.Tensor]]:
        """(lease, field -> tensor of ``n`` rows) for ``layout``: field -> (row shape, dtype);
        lease -1: a fresh, unpooled allocation (no free buffer, or ``n`` above ``rows``)."""
        if n <= self.rows:
            for k, bufs in enumerate(self.buffers):
                if bufs is None or int(self.leases[k]) == FREE:
                    bufs = self.buffers[k] = _grown(bufs or {}, layout, self.rows)
                    self.leases[k] = IN_USE
                    lease = self.slot * POOL_SIZE + k
                    return lease, {f: _as(bufs[f], *spec, n) for f, spec in layout.items()}
        return -1, _allocate(layout, n)


def release(leases: torch.Tensor, lease: int) -> None:
    """The consumer is done with the batch that came with ``lease`` (-1: nothing to do)."""
    if lease >= 0:
        leases.view(-1)[lease] = FREE


def _row_bytes(shape: tuple, dtype) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def _grown(bufs: dict[str, torch.Tensor], layout: dict[str, tuple], rows: int) -> dict:
    """Flat byte buffers for ``rows`` rows of ``layout``, those in ``bufs`` kept if big enough."""
    out = {}
    for f, (shape, dtype) in layout.items():
        need = rows * _row_bytes(shape, dtype)
        have = bufs.get(f)
        out[f] = have if have is not None and have.numel() >= need else _empty((need,), np.uint8)
    return out


def _as(flat: torch.Tensor, shape: tuple, dtype, n: int) -> torch.Tensor:
    """The first ``n`` rows of ``shape`` and ``dtype`` in the flat byte buffer ``flat``."""
    like = torch.from_numpy(np.empty(0, dtype)).dtype
    return flat[: n * _row_bytes(shape, dtype)].view(like).view(n, *shape)


def _allocate(layout: dict[str, tuple], rows: int) -> dict[str, torch.Tensor]:
    return {f: _empty((rows, *shape), dtype) for f, (shape, dtype) in layout.items()}


class _Scratch:
    """Process-local bytes reused for arrays decoded before they are copied into a batch
    (a latent stored at another size, a target array stored padded): no allocation per
    sample. Views taken since the last :meth:`reset` never overlap."""

    def __init__(self) -> None:
        self.buf, self.at = np.empty(0, np.uint8), 0

    def reset(self) -> None:
        self.at = 0

    def take(self, shape: tuple, dtype) -> np.ndarray:
        nbytes, at = _row_bytes(shape, dtype), -(-self.at // 64) * 64
        if at + nbytes > self.buf.size:  # older views keep the old buffer alive
            self.buf, at = np.empty(max(2 * self.buf.size, nbytes), np.uint8), 0
        self.at = at + nbytes
        return self.buf[at : at + nbytes].view(dtype).reshape(shape)


class ImageTarget:
    """An image-shaped target of one sample (a mask), not yet decoded: ``shape`` is the
    image's (h, w); ``decode_into(out)`` writes it into ``out``, any (h, w) view (a window
    of a batch tensor), straight from its member where it is stored at the image's size,
    else (a Zarr row padded to the split's largest image) through one scratch buffer reused
    sample after sample, which stays in cache."""

    __slots__ = ("payload", "shape", "scratch")

    def __init__(self, payload, image_hw, scratch: _Scratch) -> None:
        self.payload, self.shape, self.scratch = payload, tuple(image_hw), scratch

    def decode_into(self, out: np.ndarray) -> None:
        p, (h, w) = self.payload, self.shape
        if tuple(p.shape) == (h, w):
            p.decode_into(out)
            return
        self.scratch.reset()
        a = self.scratch.take(p.shape, p.dtype)
        p.decode_into(a)
        out[...] = a[:h, :w]


def _zero_outside(a: np.ndarray, h: int, w: int) -> None:
    """Zero a (C, H, W) latent beyond its real (h, w) (the batch's padding)."""
    a[:, h:] = 0
    a[:, :h, w:] = 0


class BatchAssembler:
    """RawSamples -> one batch dict (see module docstring). ``scale_table``: float32 table
    to turn a uint8 index into ``scales_hat`` here (None: the batch keeps the index).
    ``pool``: where same-size batches get their buffers (None: allocated per batch); such
    batches carry their ``"lease"`` (-1 when unpooled)."""

    def __init__(
        self,
        fields: tuple[str, ...],
        resize: int | None,
        scale_table: np.ndarray | None,
        pool: BufferPool | None = None,
        task=None,
    ) -> None:
        self.fields, self.resize, self.scale_table = tuple(fields), resize, scale_table
        self.pool, self.task = pool, task
        self._collate = LatentCollate(fields, resize)
        self._scratch, self._targets = _Scratch(), _Scratch()

    def __call__(self, samples: list) -> dict:
        if self.task is not None and self.task.pads_latents:
            return self._padded(samples)
        if not self._direct(samples):
            return self._collate([self._decoded(s) for s in samples])
        batch = {
            "label": torch.tensor([s.label for s in samples], dtype=torch.long),
            "key": [s.key for s in samples],
        }
        layout = {
            f: (samples[0].payload[f].shape, samples[0].payload[f].dtype) for f in self.fields
        }
        if self.pool is not None:
            batch["lease"], outs = self.pool.take(layout, len(samples))
        else:
            outs = _allocate(layout, len(samples))
        for f in self.fields:
            out = outs[f]
            view = out.numpy()
            for i, s in enumerate(samples):
                s.payload[f].decode_into(view[i])
            batch[f] = self._scales(out) if f == "scales_hat" else out
        return batch

    def _padded(self, samples: list) -> dict:
        """Latents zero-padded to the batch's largest (h, w) (top-left, where the store put
        them), and the task's targets, in pooled buffers where the task names their layout
        (:meth:`~latentcache.tasks.base.Task.target_layout`)."""
        hb = max(s.latent_shape[0] for s in samples)
        wb = max(s.latent_shape[1] for s in samples)
        layout = {}
        for f in self.fields:
            p0 = samples[0].payload[f]
            layout[f] = ((p0.shape[0], hb, wb), p0.dtype)
        targets = self.task.target_layout((hb, wb))
        layout |= targets
        batch: dict = {"key": [s.key for s in samples]}
        if self.pool is not None:
            batch["lease"], outs = self.pool.take(layout, len(samples))
        else:
            outs = _allocate(layout, len(samples))
        for f in self.fields:
            out = outs[f]
            self._pad_into(out.numpy(), [s.payload[f] for s in samples], samples)
            batch[f] = self._scales(out) if f == "scales_hat" else out
        rows = self._target_rows(samples)
        if targets:
            out = {t: outs[t] for t in targets}
            return batch | self.task.collate_targets(rows, (hb, wb), out)
        return batch | self.task.collate_targets(rows, (hb, wb))

    def _pad_into(self, view: np.ndarray, payloads: list, samples: list) -> None:
        """Each latent into its row of ``view`` (B, C, hb, wb): straight when stored at that
        shape, else through scratch; only the padding is zeroed."""
        for i, (p, s) in enumerate(zip(payloads, samples, strict=True)):
            h, w = s.latent_shape
            row = view[i]
            if p.shape == row.shape and p.dtype == row.dtype:
                p.decode_into(row)
            else:
                self._scratch.reset()
                a = self._scratch.take(p.shape, p.dtype)
                p.decode_into(a)
                row[:, :h, :w] = a[:, :h, :w]
            if (h, w) != row.shape[1:]:
                _zero_outside(row, h, w)

    def _target_rows(self, samples: list) -> list[dict]:
        """Per sample label, image_size, canvas_offset and the task's targets: ragged ones
        decoded whole, image-shaped ones as :class:`ImageTarget` (decoded when the task
        writes them into its batch tensor)."""
        ragged = self.task.ragged_targets
        rows = []
        for s in samples:
            row = {"label": s.label, "image_size": s.image_size, "canvas_offset": s.canvas_offset}
            for t, p in s.targets.items():
                row[t] = _decode(p) if t in ragged else ImageTarget(p, s.image_size, self._targets)
            rows.append(row)
        return rows

    def _direct(self, samples: list) -> bool:
        """One real size, stored at that size, one shape and dtype per field."""
        hw = samples[0].latent_shape
        for f in self.fields:
            first = samples[0].payload[f]
            if tuple(first.shape[-2:]) != tuple(hw):
                return False
            for s in samples:
                p = s.payload[f]
                if s.latent_shape != hw or p.shape != first.shape or p.dtype != first.dtype:
                    return False
        return True

    def _scales(self, out: torch.Tensor) -> torch.Tensor:
        if out.dtype != torch.uint8 or self.scale_table is None:
            return out
        return torch.from_numpy(self.scale_table[out.numpy()])

    def _decoded(self, s) -> dict:
        d = {"key": s.key, "label": s.label, "latent_shape": s.latent_shape}
        for f in self.fields:
            p = s.payload[f]
            a = np.empty(p.shape, p.dtype)
            p.decode_into(a)
            if f == "scales_hat" and a.dtype == np.uint8:  # resizing needs float scales
                a = (self.scale_table if self.scale_table is not None else default_scale_table())[a]
            d[f] = a
        return d

"""Batches onto the training device in their stored dtypes, one batch ahead of the step.

::

    host batch dict (shared memory: y_hat int16, scale index uint8, label, any other tensor)
      └► CUDA: staged into a pinned host buffer of a small ring (slot k is written again
           only after its last copy finished: its event) ─► copy stream: non_blocking H2D
           ─► the compute stream waits for the copy; each device tensor record_stream()s
           the compute stream, so the caching allocator never hands its memory to the next
           copy while a step still reads it
      └► CPU (or a batch already on the device, e.g. ``--cache device``): passed through

Every tensor of the batch dict travels, whatever its name (labels, masks, ...); other
entries (keys, the loader's lease) pass through untouched. Normalization and augmentation
happen after, on the device (:mod:`latentcache.train.augment`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

__all__ = ["DeviceFeeder", "PinnedRing", "RING_SIZE"]

RING_SIZE = 3  # pinned buffers per field: one being copied, one staged ahead, one spare


class PinnedRing:
    """``RING_SIZE`` sets of pinned host buffers, reused in turn; a set is overwritten only
    after the copy that last read it has finished (its CUDA event)."""

    def __init__(self) -> None:
        self.slots: list[dict[str, torch.Tensor]] = [{} for _ in range(RING_SIZE)]
        self.events: list[torch.cuda.Event | None] = [None] * RING_SIZE
        self.next = 0

    def take(self) -> int:
        k, self.next = self.next, (self.next + 1) % RING_SIZE
        if self.events[k] is not None:
            self.events[k].synchronize()  # its previous H2D copy is done
        return k

    def stage(self, k: int, name: str, t: torch.Tensor) -> torch.Tensor:
        """``t`` copied into slot ``k``'s pinned buffer for ``name`` (grown when too small)."""
        buf = self.slots[k].get(name)
        rows = t.shape[0] if t.ndim else 1
        if buf is None or buf.dtype != t.dtype or buf.shape[1:] != t.shape[1:] or len(buf) < rows:
            shape = (rows, *t.shape[1:]) if t.ndim else (1,)
            buf = self.slots[k][name] = torch.empty(shape, dtype=t.dtype, pin_memory=True)
        view = buf[:rows] if t.ndim else buf[0]
        view.copy_(t)
        return view

    def done(self, k: int, stream: torch.cuda.Stream) -> torch.cuda.Event:
        """Mark the end of slot ``k``'s copies on ``stream``; returns that event."""
        event = torch.cuda.Event()
        event.record(stream)
        self.events[k] = event
        return event


class DeviceFeeder:
    """Iterate batches with their tensors on ``device``; on CUDA the copy of batch i + 1
    runs on a separate stream while step i computes (see module docstring)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        if self.cuda and self.device.index is None:  # "cuda": compared with tensors' cuda:N
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.ring = PinnedRing() if self.cuda else None

    def __call__(self, batches: Iterable[dict]) -> Iterator[dict]:
        if not self.cuda:
            yield from (self._on_device(b) for b in batches)
            return
        pending = None
        for batch in batches:
            staged = self._copy_async(batch)  # enqueued before the current step is taken
            if pending is not None:
                yield self._ready(pending)
            pending = staged
        if pending is not None:
            yield self._ready(pending)

    def _on_device(self, batch: dict) -> dict:
        return {
            k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
        }

    def _copy_async(self, batch: dict) -> tuple[dict, list[str], torch.cuda.Event]:
        """Stage ``batch``'s host tensors in pinned memory and enqueue their copies;
        returns the batch, the names copied and the event that ends their copies."""
        k = self.ring.take()
        out, copied = dict(batch), []
        with torch.cuda.stream(self.stream):
            for name, v in batch.items():
                if isinstance(v, torch.Tensor) and v.device != self.device:
                    host = v if v.is_pinned() else self.ring.stage(k, name, v)
                    out[name] = host.to(self.device, non_blocking=True)
                    copied.append(name)
        return out, copied, self.ring.done(k, self.stream)

    def _ready(self, pending: tuple[dict, list[str], torch.cuda.Event]) -> dict:
        """The compute stream waits for this batch's copies (not the next one's), and the
        copied tensors are tied to it."""
        batch, copied, event = pending
        compute = torch.cuda.current_stream(self.device)
        compute.wait_event(event)
        for name in copied:
            batch[name].record_stream(compute)
        return batch

"""Random access to one split of a store's Zarr layout, at the training loader's speed.

::

    ZarrSplit.read(start, stop, dtype="float" | "stored")
      ├► shard_reader (the loader's reader): <array>/zarr.json ─► ShardLayout
      │    per-row arrays (key, label, bpp, latent_shape): one chunk file per shard
      │    latents (y_hat, scales_hat or z_hat): one read per shard file and row range,
      │    each chunk crc-checked and Blosc-decoded straight into its row of the output
      └► zarr-python (zarr_store.read_rows): bitstreams, and layouts shard_reader declines
    then: holes dropped; dtype="float": scales_hat as float32 sigma-hat (scales.scales_to_float)

``dtype="stored"`` hands out what the store holds (``y_hat`` int16, the scale index uint8 or
float16/float32 ``scales_hat``, or ``z_hat`` int16 under its own name), as the trainer's
loader does; ``dtype="float"`` (the default) hands out float32 ``scales_hat`` whatever the
stored representation. ``y_hat`` is int16 either way. Every file the store lists is read:
a missing or damaged one is refused in one line naming it (the shard_reader's checks).
"""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np

from latentcache.errors import ConfigError, StoreCorruptError
from latentcache.store.scales import scales_array_name, stored_arrays
from latentcache.store.shard_reader import ShardFile, ShardLayout, chunk_layout, shard_layout
from latentcache.store.zarr_store import ZARR_DIR, ZARR_LAYOUT, decode_keys, read_rows

__all__ = ["READ_DTYPES", "ZarrSplit"]

READ_DTYPES = ("float", "stored")
_FIELDS = ("key", "label", "bpp", "latent_shape")
_OPEN_FILES = 16  # shard files kept open per split (least recently used closed)
_MAX_METADATA_BYTES = 1 << 20


class ZarrSplit:
    """Random access to one split of the Zarr layout; read whole shards for speed."""

    def __init__(self, store, split: str):
        self.store, self.split = store, split
        self.group = store.zarr_root()[split]
        self._arrays = stored_arrays(store.inputs, store.scales_repr)  # y_hat first
        self._scales = scales_array_name(store.scales_repr) if store.has_scales else None
        layout = self.group.attrs.get("zarr_layout", 1)
        if layout != ZARR_LAYOUT:
            raise StoreCorruptError(
                f"{store.url}/{ZARR_DIR}/{split}: Zarr layout {layout}, this latentcache reads layout {ZARR_LAYOUT}; re-encode the store"
            )
        self._dir = f"{ZARR_DIR}/{split}"
        self._len = int(self.group["key"].shape[0])
        self._layouts: dict[str, ShardLayout | None] = {}
        self._files: OrderedDict[tuple[str, int], ShardFile] = OrderedDict()
        task = store.task_unit  # the task's targets ride along (stores before them: none)
        self._extra = [
            n
            for n in ("image_size", "canvas_offset", *task.target_names)
            if n in self.group or n in task.ragged_targets
        ]

    def __len__(self) -> int:
        return self._len

    def blocks(self) -> list[tuple[int, int]]:
        """Row ranges of the Zarr shards (one per encode task)."""
        size = int(self.group.attrs["shard_size"])
        return [(s, min(s + size, len(self))) for s in range(0, len(self), size)]

    def read(
        self, start: int, stop: int, bitstreams: bool = False, dtype: str = "float"
    ) -> dict[str, np.ndarray]:
        """The valid rows in [start, stop): key (str), label (int64), bpp (float32), latent_shape
        (int32 (h, w)), y_hat (int16) and the scales: with ``dtype="float"`` ``scales_hat`` as
        float32 sigma-hat; with ``dtype="stored"`` the stored array under its stored name
        (``scales_hat`` uint8 scale index, float16 or float32; or ``z_hat`` int16); no scales
        for a codec without them (``store.inputs``); ``means_hat`` (float32) where the store
        has it; image_size, canvas_offset and the task's targets where the store has them.
        ``bitstreams``: also y_string, z_string (bytes) and z_shape."""
        if dtype not in READ_DTYPES:
            raise ConfigError(f'Invalid read dtype "{dtype}", should be one of {READ_DTYPES}')
        to_float = dtype == "float"
        z_shape = to_float and self._scales == "z_hat"  # h_s runs on each row's real size
        names = [*_FIELDS, *self._arrays, *self._extra]
        names += ["y_string", "z_string", "z_shape"] if bitstreams else ["z_shape"] * z_shape
        out = self.read_arrays(start, stop, names)
        if to_float:
            z_shapes = out.get("z_shape") if z_shape else None
            if not bitstreams:
                out.pop("z_shape", None)
            if self._scales is not None:
                out["scales_hat"] = self.store.scales_to_float(out.pop(self._scales), z_shapes)
        out["label"] = out["label"].astype(np.int64, copy=False)
        return out

    def read_arrays(self, start: int, stop: int, names: list[str]) -> dict[str, np.ndarray]:
        """The valid rows in [start, stop) of the arrays ``names``, as stored (``key`` as str;
        ``zarr_store.read_rows``'s derived and ragged names too). The trainer's loader reads its
        per-row arrays here. shard_reader reads every array whose layout it takes; zarr-python
        the rest (bitstreams, digests, ragged targets, layouts shard_reader declines)."""
        fast = [n for n in names if self._fast_for([n])] if self._fast_for(["key"]) else []
        slow = [n for n in names if n not in fast]
        out = self._read_fast(start, stop, fast) if fast else {}
        if slow:
            out |= read_rows(self.group, start, stop, ["key", *slow])
        return {n: out[n] for n in names}

    @property
    def fast(self) -> bool:
        """Whether :meth:`read` (without bitstreams) goes through shard_reader alone."""
        return self._fast_for([*_FIELDS, *self._arrays, "z_shape", *self._extra])

    def _fast_for(self, names: list[str]) -> bool:
        derived = ("y_string", "z_string", "source_sha256")
        return all(n not in derived and self._layout(n) is not None for n in names)

    def __getitem__(self, row: int) -> dict:
        """Row ``row`` as one sample (no batch dim), latents cropped to their real size."""
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} out of range [0, {len(self)})")
        got = self.read(row, row + 1)
        if not len(got["key"]):
            raise KeyError(f"row {row} of {self.split} is a hole left by a failed sample")
        return _crop({k: v[0] for k, v in got.items()})

    def __iter__(self):
        for start, stop in self.blocks():
            got = self.read(start, stop)
            for i in range(len(got["key"])):
                yield _crop({k: v[i] for k, v in got.items()})

    def close(self) -> None:
        """Close the shard files kept open (reading again reopens them)."""
        while self._files:
            self._files.popitem()[1].close()

    # ------------------------------------------------------------------ shard_reader path

    def _layout(self, name: str) -> ShardLayout | None:
        """The array's layout if shard_reader reads it, checked against what zarr-python
        opened (itself checked against the manifest: LatentStore.zarr_split)."""
        if name not in self._layouts:
            rel = f"{self._dir}/{name}/zarr.json"
            try:
                with self.store.open_file(rel) as f:
                    raw = f.read(_MAX_METADATA_BYTES + 1)
            except FileNotFoundError:
                raw = b""  # zarr-python names what is missing
            try:
                meta = json.loads(raw) if len(raw) <= _MAX_METADATA_BYTES else {}
            except (json.JSONDecodeError, UnicodeDecodeError):
                meta = {}
            lay = shard_layout(meta) or chunk_layout(meta)
            self._layouts[name] = lay if lay is not None and self._agrees(name, lay) else None
        return self._layouts[name]

    def _agrees(self, name: str, lay: ShardLayout) -> bool:
        arr = self.group[name]
        if tuple(arr.shape) != lay.shape or np.dtype(arr.dtype) != lay.dtype.newbyteorder("="):
            raise StoreCorruptError(f"{self._dir}/{name}/zarr.json: changed while being read")
        return lay.shape[0] == len(self) or name == "key"

    def _read_fast(self, start: int, stop: int, names: list[str]) -> dict[str, np.ndarray]:
        stop = min(stop, len(self))
        keys = decode_keys(self._rows("key", start, stop))
        keep = np.flatnonzero(keys != "")
        out = {"key": keys[keep]}
        for name in names:
            if name != "key":
                out[name] = self._rows(name, start, stop, keep)
        return out

    def _rows(self, name: str, start: int, stop: int, keep: np.ndarray | None = None):
        """Rows ``start + keep`` (all of [start, stop) without ``keep``) of array ``name``."""
        lay = self._layout(name)
        rows = np.arange(start, stop) if keep is None else start + keep
        out = np.empty((len(rows), *lay.row_shape), lay.dtype.newbyteorder("="))
        s, c = lay.shard_rows, lay.chunk_rows
        for shard in np.unique(rows // s).tolist():
            mine = np.flatnonzero(rows // s == shard)
            local = rows[mine] - shard * s
            sf = self._shard(name, shard, start, stop)
            if c == 1:  # one sample per chunk: each decoded straight into its output row
                lo = int(local[0])
                bufs = sf.chunk_bytes(lo, int(local[-1]) + 1)
                for i, r in zip(mine.tolist(), local.tolist(), strict=True):
                    sf.decode_chunk(bufs[r - lo], out[i : i + 1], r)
            else:
                a, b = int(local[0]) // c * c, -(-(int(local[-1]) + 1) // c) * c
                tmp = np.empty((b - a, *lay.row_shape), out.dtype)
                sf.read_into(a, b, tmp)
                out[mine] = tmp[local - a]
        return out

    def _shard(self, name: str, shard: int, start: int, stop: int) -> ShardFile:
        key = (name, shard)
        if key not in self._files:
            lay = self._layouts[name]
            rel = f"{self._dir}/{name}/{lay.shard_key(shard)}"
            try:
                f = self.store.open_file(rel, seekable=True)
            except FileNotFoundError:
                raise StoreCorruptError(
                    f"{rel}: missing (rows {start}:{stop} of {self._dir}/{name})"
                ) from None
            self._files[key] = ShardFile(lay, f, rel)
            while len(self._files) > _OPEN_FILES:
                self._files.popitem(last=False)[1].close()
        self._files.move_to_end(key)
        return self._files[key]


def _crop(sample: dict) -> dict:
    h, w = (int(v) for v in sample["latent_shape"])
    for name in ("y_hat", "scales_hat", "means_hat"):
        if name in sample:
            sample[name] = sample[name][..., :h, :w]
    return sample

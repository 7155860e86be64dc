"""Where a loader's samples come from: pieces of a split, read sequentially, decoded late.

::

    ZarrSource   piece = rows [a, b) of one Zarr shard
      per-row arrays (key, label, latent_shape) ─ ZarrSplit.read_arrays, once per shard
      latents ─ ShardFile.chunk_bytes: one read per array and piece (shard_reader)
        (layouts shard_reader does not take, and z_hat stores: ZarrSplit.read, decoded)
    WdsSource    unit = one tar, streamed; a piece = its next n samples
      LatentStore.open_file ─ wds_store.checked_raw_samples ─ decode_array at batch time
                   │
                   ▼
    RawSample(key, label, latent_shape, payload: field -> Payload)
      Payload.decode_into(out) decodes one latent straight into its slot of a batch

Latents travel in their stored dtypes (``y_hat`` int16, the scale index uint8); decoding
waits until the batch is assembled, so a shuffle buffer holds compressed bytes.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from latentcache.errors import StoreCorruptError
from latentcache.store.scales import scales_array_name
from latentcache.store.shard_reader import ShardFile, ShardLayout, open_shard, read_layout
from latentcache.store.wds_store import (
    array_member,
    check_label,
    checked_raw_samples,
    decode_array,
    sample_info,
)
from latentcache.store.zarr_store import ZARR_DIR

__all__ = ["Payload", "RawSample", "ZarrSource", "WdsSource", "check_geometry"]

_UINT8 = np.dtype(np.uint8)
OPEN_SHARDS = 64  # shard files kept open per array by one reader (least recently used closed)


@dataclass(frozen=True, slots=True)
class Payload:
    """One latent (or target array) of one sample: its stored shape and dtype, and how to
    decode it: ``decode(*args, out)``, a module-level function and its arguments rather
    than a closure, as a shuffle buffer holds thousands of these (fewer objects for the
    garbage collector to walk)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    decode: Callable[..., None]
    args: tuple = ()

    def decode_into(self, out: np.ndarray) -> None:
        self.decode(*self.args, out)


@dataclass(frozen=True, slots=True)
class RawSample:
    key: str
    label: int
    latent_shape: tuple[int, int]
    payload: dict[str, Payload]
    targets: dict[str, Payload] = dataclasses.field(default_factory=dict)  # the task's (a mask)
    image_size: tuple[int, int] | None = None  # read for tasks with target arrays
    canvas_offset: tuple[int, int] | None = None


def check_geometry(image_size, canvas_offset, latent_shape) -> None:
    """A row's image size, canvas offset and latent size agree with CompressAI's centred
    padding to 64 (ValueError otherwise): its targets can be placed on the canvas."""
    h, w = image_size
    top, left = canvas_offset
    lat = (-(-h // 64) * 4, -(-w // 64) * 4)
    if tuple(latent_shape) != lat or (top, left) != (
        (lat[0] * 16 - h) // 2,
        (lat[1] * 16 - w) // 2,
    ):
        raise ValueError(
            f"image_size {tuple(image_size)}, canvas_offset {tuple(canvas_offset)} and "
            f"latent_shape {tuple(latent_shape)} disagree"
        )


def _array_payload(a: np.ndarray) -> Payload:
    return Payload(tuple(a.shape), a.dtype, _copy_into, (a,))


def _copy_into(a: np.ndarray, out: np.ndarray) -> None:
    np.copyto(out, a)


class ZarrSource:
    """Pieces of one split of a store's Zarr layout (rows of one shard at a time)."""

    def __init__(self, store, split: str, fields: tuple[str, ...]) -> None:
        self.store, self.split, self.fields = store, split, tuple(fields)
        self.zs = store.zarr_split(split)
        self.targets = tuple(store.task_unit.target_names)
        self._rows: OrderedDict[int, dict] = OrderedDict()
        self._files: OrderedDict[tuple[str, int], ShardFile] = OrderedDict()
        self._layouts = {f: self._layout(f) for f in (*self.fields, *self.targets)}
        self.block_rows = int(self.zs.group.attrs["shard_size"])

    def _array(self, field: str) -> str:
        return scales_array_name(self.store.scales_repr) if field == "scales_hat" else field

    def _layout(self, field: str) -> ShardLayout | None:
        if field == "scales_hat" and self.store.scales_repr == "z_hat":
            return None  # scales_hat = h_s(z_hat): ZarrSplit.read runs the codec
        layout_dir = self.store.manifest.get("layout", {}).get("zarr", ZARR_DIR)
        try:
            return read_layout(self.store.open_file, self._dir(field, layout_dir))
        except (FileNotFoundError, ValueError):
            return None

    def _dir(self, field: str, layout_dir: str = ZARR_DIR) -> str:
        return f"{layout_dir}/{self.split}/{self._array(field)}"

    @property
    def fast(self) -> bool:
        """Whether every field is read by shard_reader (else ZarrSplit.read)."""
        return all(lay is not None and lay.chunk_rows == 1 for lay in self._layouts.values())

    def blocks(self) -> list[tuple[int, int]]:
        return self.zs.blocks()

    def _block_rows(self, block: int) -> dict:
        """key, label, latent_shape of a block's valid rows (holes trail a block's samples)."""
        if block not in self._rows:
            start = block * self.block_rows
            stop = min(start + self.block_rows, len(self.zs))
            geometry = ["image_size", "canvas_offset"] if self.targets else []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows = self.zs.read_arrays(start, stop, ["key", "label", "latent_shape", *geometry])
            self._rows[block] = {
                "key": [str(k) for k in rows["key"]],
                "label": np.asarray(rows["label"], np.int64).tolist(),
                **{
                    n: [tuple(int(v) for v in s) for s in rows[n]]
                    for n in ("latent_shape", *geometry)
                },
            }
            self._check_rows(block)
            while len(self._rows) > OPEN_SHARDS:
                self._rows.popitem(last=False)
        self._rows.move_to_end(block)
        return self._rows[block]

    def _check_rows(self, block: int) -> None:
        if not self.targets:
            return
        meta = self._rows[block]
        for i, key in enumerate(meta["key"]):
            try:
                check_geometry(
                    meta["image_size"][i], meta["canvas_offset"][i], meta["latent_shape"][i]
                )
            except ValueError as exc:
                raise StoreCorruptError(
                    f"{self._dir('canvas_offset')}: row {key!r}: {exc}"
                ) from None

    def piece(self, start: int, stop: int) -> list[RawSample]:
        """The valid samples of rows [start, stop), which lie in one block."""
        block = start // self.block_rows
        meta = self._block_rows(block)
        base = block * self.block_rows
        stop = min(stop, base + len(meta["key"]))  # rows past the block's samples are holes
        if stop <= start:
            return []
        if self.fast:
            payloads = self._fast_payloads(start, stop)
        else:
            payloads = self._slow_payloads(start, stop)
        return [self._sample(meta, r - base, payloads[i]) for i, r in enumerate(range(start, stop))]

    def _sample(self, meta: dict, j: int, payload: dict[str, Payload]) -> RawSample:
        if not self.targets:
            return RawSample(meta["key"][j], meta["label"][j], meta["latent_shape"][j], payload)
        return RawSample(
            meta["key"][j],
            meta["label"][j],
            meta["latent_shape"][j],
            {f: payload[f] for f in self.fields},
            {t: payload[t] for t in self.targets},
            meta["image_size"][j],
            meta["canvas_offset"][j],
        )

    def _open_seekable(self, rel: str):
        return self.store.open_file(rel, seekable=True)  # the shard index, then row ranges

    def _shard(self, field: str, shard: int) -> ShardFile:
        key = (field, shard)
        if key not in self._files:
            self._files[key] = open_shard(
                self._open_seekable, self._dir(field), self._layouts[field], shard
            )
            while len(self._files) > OPEN_SHARDS * len(self._layouts):
                self._files.popitem(last=False)[1].close()
        self._files.move_to_end(key)
        return self._files[key]

    def _fast_payloads(self, start: int, stop: int) -> list[dict[str, Payload]]:
        out: list[dict[str, Payload]] = [{} for _ in range(start, stop)]
        for field in (*self.fields, *self.targets):
            lay = self._layouts[field]
            s = lay.shard_rows
            for shard in range(start // s, -(-stop // s)):
                lo, hi = max(start, shard * s), min(stop, (shard + 1) * s)
                sf = self._shard(field, shard)
                chunks = sf.chunk_bytes(lo - shard * s, hi - shard * s)
                for r, buf in zip(range(lo, hi), chunks, strict=True):
                    out[r - start][field] = Payload(
                        lay.row_shape, lay.dtype.newbyteorder("="), _decode_chunk,
                        (sf, buf, r - shard * s),
                    )  # fmt: skip
        return out

    def _slow_payloads(self, start: int, stop: int) -> list[dict[str, Payload]]:
        got = self.zs.read(start, stop)
        return [
            {
                f: _array_payload(np.ascontiguousarray(got[f][i]))
                for f in (*self.fields, *self.targets)
            }
            for i in range(len(got["key"]))
        ]

    def close(self) -> None:
        for sf in self._files.values():
            sf.close()
        self._files.clear()


def _decode_chunk(sf: ShardFile, buf, j: int, out: np.ndarray) -> None:
    sf.decode_chunk(buf, out[None], j)


class WdsSource:
    """Samples of one split of a store's WebDataset layout, one tar at a time.

    Every tar is read through ``wds_store.checked_raw_samples`` (declared size, member
    rules, sha256 at its end); each sample's label, latent size and arrays are checked
    against the manifest's ``SampleLimits`` (arrays when they are decoded, at batch time).
    """

    def __init__(self, store, split: str, fields: tuple[str, ...]) -> None:
        self.store, self.split, self.fields = store, split, tuple(fields)
        self.entries = store.wds_entries(split)
        self.limits = store.sample_limits(split)
        self._stored = scales_array_name(store.scales_repr)
        self.task = store.task_unit
        self._eager = store.scales_repr == "z_hat" and "scales_hat" in self.fields

    def units(self) -> list[str]:
        """The split's non-empty tars, as paths relative to the store (``store.open_file``)."""
        return [rel for rel, e in self.entries.items() if e["count"] > 0]

    def max_tar_samples(self) -> int:
        """The most samples a tar of the split holds (its shard's count in the manifest)."""
        return max((int(e["count"]) for e in self.entries.values()), default=1) or 1

    def samples(self, rel: str) -> Iterator[RawSample]:
        """The samples of one tar, in order, their latents still encoded."""
        with self.store.open_file(rel) as f:
            for raw in checked_raw_samples(f, self.entries[rel]):
                try:
                    yield self._raw_sample(raw, rel)
                except (ValueError, KeyError, TypeError) as exc:
                    reason = f"sample {raw['__key__']!r}: {exc}"
                    raise StoreCorruptError(f"{rel}: {reason[:300]}") from None

    def _raw_sample(self, raw: dict, rel: str) -> RawSample:
        if self._eager:  # z_hat: scales_hat needs h_s; decode the whole sample now
            s = self.store.decode_wds_sample(raw)
            payload = {f: _array_payload(np.ascontiguousarray(s[f])) for f in self.fields}
            return RawSample(s["key"], int(s["label"]), tuple(s["latent_shape"]), payload)
        key = str(raw["__key__"])
        info, label = sample_info(raw)  # the sample's .json, parsed once
        hw = _latent_size(info, label, self.limits)
        payload = {}
        for f in self.fields:
            name = self._stored if f == "scales_hat" else f
            spec = self.limits.arrays[name]
            encoding, data = array_member(raw, name)
            payload[f] = Payload(
                (spec.channels, *hw), np.dtype(spec.dtype), _decode_member,
                (encoding, data, spec, rel, key, name),
            )  # fmt: skip
        if not self.task.target_names:
            return RawSample(key, label, hw, payload)
        image, offset = _geometry(info, hw)
        if self.task.ragged_targets:  # small, of varying length (boxes): parsed and checked now
            parsed = self._parse_targets(raw, image, rel)
            targets = {t: _array_payload(parsed[t]) for t in self.task.target_names}
        else:  # image-sized (a mask): decoded late, into the batch
            max_hw = self.limits.max_image_hw
            targets = {
                t: Payload(image, _UINT8, _decode_target, (self.task, raw, t, max_hw, rel))
                for t in self.task.target_names
            }
        return RawSample(key, label, hw, payload, targets, image, offset)

    def _parse_targets(self, raw: dict, image, rel: str) -> dict[str, np.ndarray]:
        try:
            return self.task.parse_members(raw, image, self.limits.max_image_hw)
        except ValueError as exc:
            raise _sample_error(rel, raw["__key__"], exc) from None


def _sample_error(rel: str, key: str, reason) -> StoreCorruptError:
    """The one-line refusal of a sample of tar ``rel``: ``<tar>: sample '<key>': <reason>``."""
    return StoreCorruptError(f"{rel}: sample {key!r}: {reason}")


def _decode_target(task, raw: dict, name: str, max_hw, rel: str, out: np.ndarray) -> None:
    """Target ``name`` of a raw sample into ``out`` (the image's size), as the task reads it."""
    try:
        a = task.read_member(raw, name, out.shape, max_hw)
    except ValueError as exc:
        raise _sample_error(rel, raw["__key__"], exc) from None
    np.copyto(out, a)


def _geometry(info: dict, hw) -> tuple[tuple[int, int], tuple[int, int]]:
    """(image_size, canvas_offset) of a raw sample's .json, checked against its latent size."""
    try:
        image = tuple(int(v) for v in info["image_size"])
        offset = tuple(int(v) for v in info["canvas_offset"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"bad or missing image_size / canvas_offset in .json ({exc})") from None
    if len(image) != 2 or len(offset) != 2:
        raise ValueError(f"image_size {image} / canvas_offset {offset}: expected two values")
    check_geometry(image, offset, hw)
    return image, offset


def _latent_size(info: dict, label, limits) -> tuple[int, int]:
    """The latent (h, w) of a sample's .json; it and the label checked against the
    manifest's limits."""
    check_label(label, limits)
    try:
        hw = tuple(int(v) for v in info["latent_shape"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"bad or missing latent_shape in .json ({exc})") from None
    max_hw = limits.arrays["y_hat"].max_hw
    if len(hw) != 2 or not (0 < hw[0] <= max_hw[0] and 0 < hw[1] <= max_hw[1]):
        raise ValueError(f"latent_shape {hw} outside the split's latent size {tuple(max_hw)}")
    return hw


def _decode_member(encoding: str, data, spec, rel: str, key: str, name: str, out) -> None:
    """Array member ``name`` of a raw sample into ``out`` (its .json's shape), checked."""
    try:
        a = decode_array(encoding, data, spec)
        if a.shape != out.shape:
            raise ValueError(f"shape {a.shape}, its .json says {out.shape}")
    except ValueError as exc:
        raise _sample_error(rel, key, f"{name}.{encoding}: {exc}") from None
    np.copyto(out, a)

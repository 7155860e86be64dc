"""Reading a finished store: its card, and its samples as arrays (Zarr) or tar streams (WebDataset).

::

    open_store(path or URL) ─► StoreLocation (fsspec filesystem + root)
      └► LatentStore ─► .manifest (schema-validated) / .classes / .codec / .split_info(split)
           │             .task / .inputs (manifest v1 or v2, read one way)
           ├► .zarr_root() ─► Zarr group, read-only (LocalStore, or FsspecStore for URLs)
           ├► .zarr_split(split) ─► ZarrSplit: blocks(), read(start, stop, dtype="float"|"stored")
           │     (store/zarr_split.py: the loader's shard reader, zarr-python as the fallback)
           ├► .open_file(rel) ─► a store file by its manifest path
           └► .wds_samples(split, shards) ─► checked, decoded samples of the split's tars

Every reader hands out float32 ``scales_hat`` whatever the stored representation (unless
asked for the stored dtypes: ``ZarrSplit.read(..., dtype="stored")``), ``y_hat``
as the int16 symbols the entropy coder coded, and ``means_hat`` (float32) for codecs with
means: the decoder's y_hat is then ``y_hat + means_hat``, bit-exact (:func:`decoded_y_hat`;
the factorized prior adds its per-channel medians, ``manifest["latents"]``). A store
is untrusted input: see :mod:`latentcache.store.wds_store` for what is checked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from latentcache.errors import ConfigError, StoreCorruptError, StoreNotFoundError
from latentcache.store.location import StoreLocation, locate
from latentcache.store.manifest import (
    load_manifest,
    manifest_inputs,
    manifest_task,
    sha256_bounded,
)
from latentcache.store.scales import (
    DEFAULT_SCALE_FLOOR,
    scales_array_name,
    scales_dtype,
    scales_to_float,
)
from latentcache.store.wds_store import ArraySpec, SampleLimits, iter_tar_samples, parse_sample
from latentcache.store.zarr_split import ZarrSplit
from latentcache.store.zarr_store import ZARR_DIR
from latentcache.tasks import Task, store_task

__all__ = ["LatentStore", "ZarrSplit", "decoded_y_hat", "open_store"]


class LatentStore:
    """A finished latentcache store (``manifest.json`` present), at a local path or a URL."""

    def __init__(self, path: str | os.PathLike | StoreLocation, codec=None):
        self.location = locate(path)
        self.url = self.location.url
        self.manifest, self.manifest_bytes = load_manifest(self.location)
        self._codec = codec
        self._table = np.asarray(self.manifest["scale_table"], dtype=np.float32)
        self._zarr_splits: dict[str, ZarrSplit] = {}

    @property
    def path(self) -> Path:
        """The store's folder; only local stores have one (use ``open_file`` for any store)."""
        if not self.location.local:
            raise ConfigError(f"{self.url} is not a local folder: read its files with open_file()")
        return Path(self.location.root)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["dataset"]["classes"])

    @property
    def task_unit(self) -> Task:
        """The store's task unit (``latentcache.tasks``); stores before tasks: classification."""
        return store_task(self.manifest)

    @property
    def splits(self) -> list[str]:
        return [s for s, info in self.manifest["splits"].items() if info["stored"] > 0]

    @property
    def task(self) -> dict:
        """``{"name": "classification" | ..., <the task's own keys>}`` (v1 stores: classification)."""
        return manifest_task(self.manifest)

    @property
    def inputs(self) -> list[str]:
        """The latent arrays a model receives, in order (v1 stores: y_hat, scales_hat);
        ``y_hat`` is the coded symbols: with ``means_hat`` the decoder's is their sum."""
        return manifest_inputs(self.manifest)

    @property
    def codec(self) -> dict:
        return dict(self.manifest["codec"])

    @property
    def has_scales(self) -> bool:
        return "scales_hat" in self.inputs

    @property
    def num_channels(self) -> int:
        return int(self.manifest["codec"]["M"])

    @property
    def formats(self) -> list[str]:
        return list(self.manifest["formats"])

    @property
    def scale_floor(self) -> float:
        """The codec's lower bound on sigma-hat (stores before it was recorded: 0.11)."""
        return float(self.manifest.get("scale_floor", DEFAULT_SCALE_FLOOR))

    @property
    def scales_repr(self) -> str:
        return self.manifest["scales_repr"]

    def split_info(self, split: str) -> dict:
        if split not in self.manifest["splits"]:
            raise ConfigError(
                f'Unknown split "{split}". Available: {sorted(self.manifest["splits"])}'
            )
        return dict(self.manifest["splits"][split])

    def scales_to_float(self, stored: np.ndarray, z_shapes=None) -> np.ndarray:
        """Float32 scales_hat; a z_hat store needs each row's ``z_shapes`` when padded."""
        h_s = self._codec.model.h_s if self._codec is not None else None
        return scales_to_float(stored, self.scales_repr, self._table, h_s, z_shapes)

    def zarr_root(self):
        """The store's Zarr v3 root group, read-only (every Zarr read goes through here)."""
        import zarr
        from zarr.storage import FsspecStore, LocalStore

        if self.location.local:
            zstore = LocalStore(self.path / ZARR_DIR, read_only=True)
        else:
            zstore = FsspecStore.from_url(f"{self.url.rstrip('/')}/{ZARR_DIR}", read_only=True)
        return zarr.open_group(zstore, mode="r", zarr_format=3)

    def open_file(self, rel: str, seekable: bool = False):
        """A store file (path relative to the store, as in the manifest), opened for binary
        reading; sequential reads (over HTTP it is streamed) unless ``seekable`` (over HTTP,
        byte ranges). Refuses paths outside the store."""
        try:
            return self.location.open(rel, seekable=seekable)
        except FileNotFoundError:
            raise StoreNotFoundError(f"{rel}: missing from {self.url}") from None

    def file_problem(self, entry: dict) -> str | None:
        """What is wrong with a manifest file entry (missing, size, sha256), or None if intact."""
        size = self.location.size(entry["path"])
        if size is None:
            return "missing"
        if size not in (-1, entry["bytes"]):  # -1: unknown until read
            return f"{size} bytes, manifest says {entry['bytes']}"
        with self.open_file(entry["path"]) as f:
            got, n = sha256_bounded(f, entry["bytes"])
        if n != entry["bytes"]:
            return f"{n} bytes read, manifest says {entry['bytes']}"
        return None if got == entry["sha256"] else "sha256 differs from the manifest"

    def zarr_split(self, split: str) -> ZarrSplit:
        """The split's Zarr group, opened once per store object."""
        if split not in self._zarr_splits:
            self._need("zarr")
            self.split_info(split)
            zs = ZarrSplit(self, split)
            self._check_zarr_arrays(split, zs.group)
            self._zarr_splits[split] = zs
        return self._zarr_splits[split]

    def _check_zarr_arrays(self, split: str, group) -> None:
        """The latent arrays' metadata against the manifest, before any chunk is read."""
        rows = int(self.split_info(split).get("rows", 0))
        for name, spec in self.sample_limits(split).arrays.items():
            where = f"{ZARR_DIR}/{split}/{name}"
            try:
                a = group[name]
            except KeyError:
                raise StoreCorruptError(f"{where}/zarr.json: missing from {self.url}") from None
            if a.dtype != np.dtype(spec.dtype):
                raise StoreCorruptError(f"{where}: dtype {a.dtype}, manifest says {spec.dtype}")
            c, (h, w) = spec.channels, spec.max_hw
            if len(a.shape) != 4 or a.shape[1] != c or a.shape[2] > h or a.shape[3] > w:
                raise StoreCorruptError(
                    f"{where}: shape {a.shape}, manifest says at most ({rows}, {c}, {h}, {w}) (oversized array)"
                )
            if rows and a.shape[0] != rows:
                raise StoreCorruptError(f"{where}: {a.shape[0]} rows, manifest says {rows}")
        self._check_target_arrays(split, group, rows)

    def _check_target_arrays(self, split: str, group, rows: int) -> None:
        """The task's arrays (a mask: uint8, at most the split's largest image) and
        ``canvas_offset``, before any chunk is read."""
        limits = self.sample_limits(split)
        for name, (shape, dtype, _, _) in self.task_unit.zarr_arrays(limits.max_image_hw).items():
            where = f"{ZARR_DIR}/{split}/{name}"
            try:
                a = group[name]
            except KeyError:
                raise StoreCorruptError(f"{where}/zarr.json: missing from {self.url}") from None
            except (ValueError, TypeError) as exc:  # zarr refused the metadata
                raise StoreCorruptError(f"{where}/zarr.json: {str(exc)[:200]}") from None
            if a.dtype != np.dtype(dtype):
                raise StoreCorruptError(f"{where}: dtype {a.dtype}, the task stores {dtype}")
            if len(a.shape) != 1 + len(shape) or any(
                g > e for g, e in zip(a.shape[1:], shape, strict=True)
            ):
                raise StoreCorruptError(
                    f"{where}: shape {a.shape}, manifest says at most ({rows}, {', '.join(map(str, shape))}) (oversized array)"
                )

    def wds_shards(self, split: str) -> list[str]:
        """The split's tars holding samples: local paths, or URLs for a store at a URL (what plain
        ``webdataset`` opens); :meth:`wds_samples` takes these or the manifest's paths."""
        return [self._shard_url(rel) for rel, e in self.wds_entries(split).items() if e["count"]]

    def _shard_url(self, rel: str) -> str:
        if self.location.local:
            return self.location.join(rel)
        return f"{self.url.rstrip('/')}/{rel}"

    def wds_entries(self, split: str) -> dict[str, dict]:
        """The split's tars: manifest-relative path -> {path, bytes, sha256, count}."""
        self._need("webdataset")
        self.split_info(split)
        return {
            f["path"]: {**f, "count": sh["count"]}
            for sh in self.manifest["shards"]
            if sh["split"] == split
            for f in sh["files"]["webdataset"]
        }

    def sample_limits(self, split: str) -> SampleLimits:
        """What the manifest declares for the split's arrays: dtype, channels, largest h, w."""
        info = self.split_info(split)
        shapes = [*info.get("latent_shapes", []), info.get("zarr_latent_shape") or [0, 0]]
        h, w = max(s[0] for s in shapes), max(s[1] for s in shapes)
        m, n = int(self.codec["M"]), int(self.codec["N"])
        scales = scales_array_name(self.scales_repr) if self.has_scales else None
        arrays = {"y_hat": ArraySpec("int16", m, (h, w))}
        if scales == "z_hat":
            arrays["z_hat"] = ArraySpec("int16", n, (-(-h // 4), -(-w // 4)))
        elif scales is not None:
            arrays["scales_hat"] = ArraySpec(scales_dtype(self.scales_repr).name, m, (h, w))
        if "means_hat" in self.inputs:
            arrays["means_hat"] = ArraySpec("float32", m, (h, w))
        image = info.get("image_size_max") or info.get("zarr_image_size")
        if image is None and self.task_unit.target_names:
            raise StoreCorruptError(
                f"{self.url}: manifest.json gives split {split!r} no image_size_max, which "
                f"bounds its {self.task_unit.name} targets"
            )
        image = image or [1 << 16, 1 << 16]
        return SampleLimits(
            arrays, len(self.classes), scales, self.task_unit.name, (int(image[0]), int(image[1]))
        )

    def wds_samples(self, split: str, shards: list[str] | None = None) -> Iterator[dict]:
        """Checked, decoded samples of the split's tars (all, or ``shards`` from ``wds_shards``):
        key, label, bpp, y_hat, scales_hat (float32), latent_shape, info, y_string, z_string.

        Raises StoreCorruptError naming the tar and the reason (``wds_store`` lists the checks).
        """
        entries = self.wds_entries(split)
        named = {**{self._shard_url(rel): rel for rel in entries}, **{rel: rel for rel in entries}}
        limits = self.sample_limits(split)
        for shard in entries if shards is None else shards:
            if shard not in named:
                raise ConfigError(f"{shard!r} is not a {split} tar of {self.url}")
            rel = named[shard]
            with self.open_file(rel) as f:
                for sample in iter_tar_samples(f, entries[rel], limits):
                    yield self._float_scales(sample)

    def decode_wds_sample(self, raw: dict) -> dict:
        """One raw webdataset sample -> key, label, bpp, y_hat, scales_hat (float32), latent_shape.

        Prefer :meth:`wds_samples`, which also bounds and checks the tar itself."""
        return self._float_scales(parse_sample(raw, self._limits_any_split()))

    def _float_scales(self, out: dict) -> dict:
        if not self.has_scales:
            return out
        stored = out.pop(scales_array_name(self.scales_repr))
        z_shape = out["info"].get("z_shape") if self.scales_repr == "z_hat" else None
        out["scales_hat"] = self.scales_to_float(stored, z_shape)
        return out

    def _limits_any_split(self) -> SampleLimits:
        per = [self.sample_limits(s) for s in self.manifest["splits"]]
        return max(
            per, key=lambda lim: lim.arrays["y_hat"].max_hw[0] * lim.arrays["y_hat"].max_hw[1]
        )

    def _need(self, fmt: str) -> None:
        if fmt not in self.formats:
            raise ConfigError(f"store {self.url} has no {fmt} layout (it has {self.formats})")

    def __repr__(self) -> str:
        return f"LatentStore({self.url!r}, splits={self.splits}, codec={self.codec['arch']} q{self.codec['quality']})"


def decoded_y_hat(sample: dict, manifest: dict) -> np.ndarray:
    """The y_hat stock CompressAI ``decompress`` feeds ``g_s``, float32, from a sample that
    :class:`ZarrSplit` or :meth:`LatentStore.wds_samples` gave (any leading batch dims)."""
    y = np.asarray(sample["y_hat"]).astype(np.float32)
    if "means_hat" in sample:
        return y + np.asarray(sample["means_hat"], dtype=np.float32)
    medians = manifest.get("latents", {}).get("channel_medians")
    if medians:
        return y + np.asarray(medians, dtype=np.float32).reshape(-1, 1, 1)
    return y


def open_store(path: str | os.PathLike, codec=None) -> LatentStore:
    """Open a finished store at a local path or an fsspec URL (file://, memory://, http(s)://,
    s3://, gs://). ``codec`` is needed only for ``z_hat`` stores (``h_s`` runs on read)."""
    return LatentStore(path, codec)

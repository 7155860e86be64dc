"""Reading a finished store: its card, and its samples as arrays (Zarr) or tar streams (WebDataset).

::

    open_store(path) ─► LatentStore ─► .manifest / .classes / .codec / .split_info(split)
                                    ├► .zarr_split(split) ─► ZarrSplit: blocks(), read(start, stop)
                                    └► .wds_shards(split), .decode_wds_sample(raw)

Every reader hands out float32 ``scales_hat`` whatever the stored representation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from latentcache.errors import ConfigError
from latentcache.store.manifest import read_manifest
from latentcache.store.scales import DEFAULT_SCALE_FLOOR, scales_array_name, scales_to_float
from latentcache.store.wds_store import parse_sample
from latentcache.store.zarr_store import ZARR_DIR, read_rows

__all__ = ["LatentStore", "ZarrSplit", "open_store"]

_FIELDS = ("key", "label", "bpp", "y_hat", "latent_shape")


class ZarrSplit:
    """Random access to one split of the Zarr layout; read whole shards for speed."""

    def __init__(self, store: LatentStore, split: str):
        self.store, self.split = store, split
        self.group = store.zarr_root()[split]
        self._scales = scales_array_name(store.scales_repr)

    def __len__(self) -> int:
        return int(self.group["key"].shape[0])

    def blocks(self) -> list[tuple[int, int]]:
        """Row ranges of the Zarr shards (one per encode task)."""
        size = int(self.group.attrs["shard_size"])
        return [(s, min(s + size, len(self))) for s in range(0, len(self), size)]

    def read(self, start: int, stop: int, bitstreams: bool = False) -> dict[str, np.ndarray]:
        """The valid rows in [start, stop): key, label, bpp, y_hat, scales_hat (float32), latent_shape."""
        z_hat = self._scales == "z_hat"
        extra = ["y_string", "z_string", "z_shape"] if bitstreams else []
        if z_hat and not bitstreams:
            extra = ["z_shape"]  # h_s runs on each row cropped to its real size
        out = read_rows(self.group, start, stop, [*_FIELDS, self._scales, *extra])
        z_shapes = out.get("z_shape") if z_hat else None
        if not bitstreams:
            out.pop("z_shape", None)
        out["scales_hat"] = self.store.scales_to_float(out.pop(self._scales), z_shapes)
        out["label"] = out["label"].astype(np.int64)
        return out

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


def _crop(sample: dict) -> dict:
    h, w = (int(v) for v in sample["latent_shape"])
    for name in ("y_hat", "scales_hat"):
        sample[name] = sample[name][..., :h, :w]
    return sample


class LatentStore:
    """A finished latentcache store (``manifest.json`` present)."""

    def __init__(self, path: str | os.PathLike, codec=None):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self._codec = codec
        self._table = np.asarray(self.manifest["scale_table"], dtype=np.float32)
        self._zarr_splits: dict[str, ZarrSplit] = {}

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["dataset"]["classes"])

    @property
    def splits(self) -> list[str]:
        return [s for s, info in self.manifest["splits"].items() if info["stored"] > 0]

    @property
    def codec(self) -> dict:
        return dict(self.manifest["codec"])

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

        return zarr.open_group(self.path / ZARR_DIR, mode="r", zarr_format=3)

    def open_file(self, rel: str):
        """A store file (path relative to the store, as in the manifest), opened for binary reading."""
        return open(self.path / rel, "rb")

    def zarr_split(self, split: str) -> ZarrSplit:
        """The split's Zarr group, opened once per store object."""
        if split not in self._zarr_splits:
            self._need("zarr")
            self.split_info(split)
            self._zarr_splits[split] = ZarrSplit(self, split)
        return self._zarr_splits[split]

    def wds_shards(self, split: str) -> list[str]:
        self._need("webdataset")
        self.split_info(split)
        return [
            str(self.path / f["path"])
            for sh in self.manifest["shards"]
            if sh["split"] == split and sh["count"] > 0
            for f in sh["files"]["webdataset"]
        ]

    def decode_wds_sample(self, raw: dict) -> dict:
        """One raw webdataset sample -> key, label, bpp, y_hat, scales_hat (float32), latent_shape."""
        out = parse_sample(raw)
        stored = out.pop(scales_array_name(self.scales_repr))
        z_shape = out["info"].get("z_shape") if self.scales_repr == "z_hat" else None
        out["scales_hat"] = self.scales_to_float(stored, z_shape)
        return out

    def _need(self, fmt: str) -> None:
        if fmt not in self.formats:
            raise ConfigError(f"store {self.path} has no {fmt} layout (it has {self.formats})")

    def __repr__(self) -> str:
        return f"LatentStore({str(self.path)!r}, splits={self.splits}, codec={self.codec['arch']} q{self.codec['quality']})"


def open_store(path: str | os.PathLike, codec=None) -> LatentStore:
    """Open a finished store. ``codec`` is needed only for ``z_hat`` stores (``h_s`` runs on read)."""
    return LatentStore(path, codec)

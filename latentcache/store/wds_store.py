"""The WebDataset layout: ``wds/{split}-{index:06d}.tar``, one tar per encode task.

Each sample ``<key>`` holds::

    <key>.y_hat.npy.gz       (M, h, w) int16, gzip'd .npy (plain ``WebDataset(...).decode()`` reads it)
    <key>.scales_hat.npy.gz  the scales representation (or <key>.z_hat.npy.gz)
    <key>.cls              label, ASCII integer
    <key>.json             key, path, source_sha256, image_size, latent_shape, z_shape, bpp, ...
    <key>.y_string         the y bitstream (raw bytes)
    <key>.z_string         the z bitstream

A tar is written to a temporary name, fsync'd and renamed: a reader never sees half of one.
Any image size fits: no padding.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np

from latentcache.atomic import atomic_write
from latentcache.store.records import EncodedSample
from latentcache.store.scales import scales_array_name

__all__ = [
    "WDS_DIR",
    "tar_name",
    "write_tar",
    "npy_bytes",
    "load_npy",
    "parse_sample",
    "count_tar_samples",
]

WDS_DIR = "wds"
ARRAY_MEMBERS = ("y_hat", "scales_hat", "z_hat")
MEMBER_SUFFIXES = (*(f"{a}.npy.gz" for a in ARRAY_MEMBERS), "cls", "json", "y_string", "z_string")
MAX_MEMBER_BYTES = 256 * 2**20


def tar_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def npy_bytes(a: np.ndarray) -> bytes:
    """``.npy`` bytes, gzip'd with a fixed mtime so equal arrays give equal bytes."""
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)


def load_npy(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(gzip.decompress(b)), allow_pickle=False)


def _sample_dict(s: EncodedSample, scales_name: str) -> dict:
    return {
        "__key__": s.key,
        "y_hat.npy.gz": npy_bytes(s.y_hat),
        f"{scales_name}.npy.gz": npy_bytes(s.scales),
        "cls": str(s.label).encode(),
        "json": s.info_json(),
        "y_string": s.y_string,
        "z_string": s.z_string,
    }


def write_tar(path: Path, samples: list[EncodedSample], scales_repr: str) -> None:
    """Write ``samples`` to ``path`` atomically (temporary name, fsync, rename)."""
    import webdataset as wds

    scales_name = scales_array_name(scales_repr)
    with atomic_write(path) as f, wds.TarWriter(f, encoder=False, mtime=0) as sink:
        for s in samples:
            sink.write(_sample_dict(s, scales_name))


def parse_sample(raw: dict) -> dict:
    """Decode one raw webdataset sample (bytes values) into arrays, refusing anything odd."""
    unknown = [k for k in raw if not k.startswith("__") and k not in MEMBER_SUFFIXES]
    if unknown:
        raise ValueError(f"sample {raw.get('__key__')!r} has unexpected members {unknown}")
    info = json.loads(raw["json"])
    out = {
        "key": raw["__key__"],
        "label": int(raw["cls"]),
        "bpp": np.float32(info["bpp"]),
        "y_hat": load_npy(raw["y_hat.npy.gz"]),
        "latent_shape": np.asarray(info["latent_shape"], dtype=np.int32),
        "info": info,
    }
    for name in ("scales_hat", "z_hat"):
        if f"{name}.npy.gz" in raw:
            out[name] = load_npy(raw[f"{name}.npy.gz"])
    for name in ("y_string", "z_string"):
        if name in raw:
            out[name] = bytes(raw[name])
    return out


def count_tar_samples(path: Path) -> int:
    """Distinct sample keys in a tar, checking member names and sizes on the way."""
    keys = set()
    with tarfile.open(path, "r") as tf:
        for member in tf:
            name = member.name
            if not member.isfile() or name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"{path.name}: unsafe member {name!r}")
            if member.size > MAX_MEMBER_BYTES:
                raise ValueError(f"{path.name}: member {name!r} is {member.size} bytes")
            base = name.rsplit("/", 1)[-1]
            key, _, suffix = base.partition(".")
            if suffix not in MEMBER_SUFFIXES:
                raise ValueError(f"{path.name}: unexpected member {name!r}")
            keys.add(name[: len(name) - len(base)] + key)
    return len(keys)

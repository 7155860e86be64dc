"""The WebDataset layout: ``wds/{split}-{index:06d}.tar``, one tar per encode task.

Each sample ``<key>`` holds::

    <key>.y_hat.npy.zst      (M, h, w) int16, a Zstandard-compressed .npy (see below)
    <key>.scales_hat.npy.zst the scales representation (or <key>.z_hat.npy.zst; none for
                           the factorized prior)
    <key>.means_hat.npy.zst  (M, h, w) float32, codecs with means: decoder's y_hat = y_hat + it
    <key>.cls              label, ASCII integer
    <key>.json             key, path, source_sha256, image_size, canvas_offset, latent_shape,
                           z_shape, bpp, ...
    <key>.<target>         the task's members (latentcache.tasks), e.g. <key>.mask.png
                           and <key>.mask.npy.zst
    <key>.y_string         the y bitstream (raw bytes)
    <key>.z_string         the z bitstream

A tar is written to a temporary name, fsync'd and renamed: a reader never sees half of one.
Any image size fits: no padding.

Array members, chosen by measurement (README, "Feeding the training device"): Zstandard level 9
of the ``.npy`` bytes decodes about 2x faster than gzip at about the same size; raw ``.npy`` is
several times larger. Readers also take ``.npy.gz`` (stores written before) and plain ``.npy``.
Plain webdataset reads the members with one handler::

    wds.WebDataset(url).decode(wds.handle_extension(
        "npy.zst", lambda b: np.load(io.BytesIO(numcodecs.Zstd().decode(b)))))

Reading treats a tar as hostile input (another team's, or a server's)::

    tar stream ─► _CheckedStream: at most the manifest's bytes, sha256 compared at the end
      └► iter_raw_samples (tar_reader: ustar headers parsed with struct): regular members
         only (no links, devices, absolute or '..' names), each member within the declared
         tar size, known suffixes, grouped by key
      └► parse_sample / npy_member.decode_array: the .npy header is read first: dtype (never object: nothing
         is unpickled), channels and h, w checked against SampleLimits; then exactly the bytes
         that header declares are decompressed (gzip: a bomb stops there; zstd: the frame's
         declared size is bounded first); label in range; latent_shape consistent

Every refusal is a StoreCorruptError with one line: ``<shard>: <member>: <reason>``.
"""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentcache.atomic import atomic_write
from latentcache.errors import StoreCorruptError
from latentcache.store.npy_member import (
    ARRAY_EXT,
    ARRAY_SUFFIXES,
    MAX_MEMBER_BYTES,
    ArraySpec,
    decode_array,
    load_npy,
    npy_bytes,
    read_npy_checked,
)
from latentcache.store.records import EncodedSample
from latentcache.store.scales import scales_array_name
from latentcache.store.tar_reader import TarEntry, tar_members
from latentcache.tasks import TASKS, Task, get_task

__all__ = [
    "WDS_DIR",
    "tar_name",
    "write_tar",
    "ARRAY_EXT",
    "npy_bytes",
    "load_npy",
    "decode_array",
    "checked_raw_samples",
    "parse_sample",
    "sample_info",
    "check_label",
    "array_member",
    "count_tar_samples",
    "ArraySpec",
    "SampleLimits",
    "iter_tar_samples",
    "iter_raw_samples",
    "read_npy_checked",
]

WDS_DIR = "wds"
ARRAY_MEMBERS = ("y_hat", "scales_hat", "z_hat", "means_hat")
MEMBER_SUFFIXES = (
    *(f"{a}{x}" for a in ARRAY_MEMBERS for x in ARRAY_SUFFIXES),
    "cls",
    "json",
    "y_string",
    "z_string",
    *sorted({m for t in TASKS.values() for m in t.member_suffixes}),
)
MAX_SMALL_MEMBER = 1 << 20  # .json and .cls


def tar_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def _sample_dict(s: EncodedSample, scales_name: str, task: Task) -> dict:
    return {
        **task.wds_members(s.targets),
        "__key__": s.key,
        **{f"{name}.{ARRAY_EXT}": npy_bytes(a) for name, a in s.arrays(scales_name).items()},
        "cls": str(s.label).encode(),
        "json": s.info_json(),
        "y_string": s.y_string,
        "z_string": s.z_string,
    }


def write_tar(
    path: Path, samples: list[EncodedSample], scales_repr: str, task: Task | None = None
) -> None:
    """Write ``samples`` (and their ``task``'s target members) to ``path`` atomically
    (temporary name, fsync, rename)."""
    task = task or get_task("classification")
    import webdataset as wds

    scales_name = scales_array_name(scales_repr)
    with atomic_write(path) as f, wds.TarWriter(f, encoder=False, mtime=0) as sink:
        for s in samples:
            sink.write(_sample_dict(s, scales_name, task))


@dataclass(frozen=True)
class SampleLimits:
    """What the manifest declares for one split's samples (``LatentStore.sample_limits``)."""

    arrays: dict[str, ArraySpec]  # y_hat, the stored scales (scales_hat or z_hat), means_hat
    num_classes: int
    scales_name: str | None  # None: no σ̂ stored (the factorized prior)
    task: str = "classification"  # whose target members each sample carries
    max_image_hw: tuple[int, int] = (1 << 16, 1 << 16)  # the split's largest image


def parse_sample(raw: dict, limits: SampleLimits | None = None) -> dict:
    """Decode one raw webdataset sample (bytes values) into arrays, refusing anything odd."""
    unknown = [k for k in raw if not k.startswith("__") and k not in MEMBER_SUFFIXES]
    if unknown:
        raise ValueError(f"unexpected members {unknown}")
    info, label = sample_info(raw)
    out = {
        "key": raw["__key__"],
        "label": label,
        "bpp": np.float32(info["bpp"]),
        "latent_shape": np.asarray(info["latent_shape"], dtype=np.int32),
        "info": info,
    }
    for name in ARRAY_MEMBERS:
        spec = limits.arrays.get(name) if limits else ArraySpec.unchecked()
        for suffix in ARRAY_SUFFIXES:
            if f"{name}{suffix}" in raw:
                if spec is None:
                    raise ValueError(f"{name}{suffix}: not an array this store declares")
                out[name] = np.array(_decode_member(raw[f"{name}{suffix}"], spec, suffix, name))
    for name in ("y_string", "z_string"):
        if name in raw:
            out[name] = bytes(raw[name])
    if limits is not None:
        _check_sample(out, limits)
        out |= get_task(limits.task).parse_members(raw, _image_hw(info), limits.max_image_hw)
    return out


def _image_hw(info: dict) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in info["image_size"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"bad or missing image_size in .json ({exc})") from None
    return h, w


def sample_info(raw: dict) -> tuple[dict, int]:
    """A raw sample's ``.json`` info and ``.cls`` label, parsed (ValueError if unreadable)."""
    try:
        return json.loads(raw["json"]), int(raw["cls"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"bad or missing .json / .cls member ({exc})") from None


def check_label(label: int, limits: SampleLimits) -> None:
    """A class label in range; -1 where the store's task has no label per image."""
    if not get_task(limits.task).labelled:
        if label != -1:
            raise ValueError(f"label {label}: a {limits.task} sample's is -1")
        return
    if not 0 <= label < limits.num_classes:
        raise ValueError(f"label {label} outside 0..{limits.num_classes - 1}")


def array_member(raw: dict, name: str) -> tuple[str, bytes]:
    """(encoding, bytes) of array ``name`` in a raw sample: ``npy.zst``, ``npy.gz`` or ``npy``."""
    for suffix in ARRAY_SUFFIXES:
        if f"{name}{suffix}" in raw:
            return suffix[1:], raw[f"{name}{suffix}"]
    raise ValueError(f"missing array member {name}")


def _decode_member(b: bytes, spec: ArraySpec, suffix: str, name: str) -> np.ndarray:
    try:
        return decode_array(suffix[1:], b, spec)
    except ValueError as exc:
        raise ValueError(f"{name}{suffix}: {exc}") from None


def _check_sample(out: dict, limits: SampleLimits) -> None:
    missing = [n for n in limits.arrays if n not in out]
    if missing:
        raise ValueError(f"missing array members {missing}")
    check_label(out["label"], limits)
    hw = tuple(int(v) for v in out["latent_shape"].ravel())
    if hw != out["y_hat"].shape[1:]:
        raise ValueError(f"latent_shape {hw} is not y_hat's {out['y_hat'].shape[1:]}")
    for name in ("scales_hat", "means_hat"):
        if name in out and out[name].shape != out["y_hat"].shape:
            raise ValueError(f"{name} {out[name].shape} is not y_hat's {out['y_hat'].shape}")


class _CheckedStream(io.RawIOBase):
    """A read-only stream that stops past ``declared`` bytes and hashes what it reads."""

    def __init__(self, f, name: str, declared: int):
        self.f, self.name, self.declared = f, name, declared
        self.read_bytes, self.sha = 0, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        want = min(len(buf), self.declared + 1 - self.read_bytes)
        data = self.f.read(want) if want > 0 else b""
        self.read_bytes += len(data)
        if self.read_bytes > self.declared:
            raise StoreCorruptError(
                f"{self.name}: longer than the {self.declared} bytes the manifest declares"
            )
        self.sha.update(data)
        buf[: len(data)] = data
        return len(data)

    def finish(self, sha256: str | None) -> None:
        """Read to the end and compare size and sha256 with the manifest."""
        while self.read(1 << 20):
            pass
        if self.read_bytes != self.declared:
            raise StoreCorruptError(
                f"{self.name}: {self.read_bytes} bytes, manifest says {self.declared} (truncated)"
            )
        if sha256 and self.sha.hexdigest() != sha256:
            raise StoreCorruptError(f"{self.name}: sha256 differs from the manifest")


def _member_check(declared: int):
    """The rules every member of a store's tar meets, checked before its data is read."""
    bound = min(declared, MAX_MEMBER_BYTES)

    def check(entry: TarEntry) -> None:
        name = entry.name
        if name.startswith("/") or ".." in name.split("/") or "\\" in name:
            raise ValueError(f"member {name!r}: absolute or '..' path (path traversal)")
        if entry.link:
            raise ValueError(f"member {name!r}: a link to {entry.linkname!r}, refused")
        if not entry.regular:
            raise ValueError(f"member {name!r}: not a regular file (device, fifo or directory)")
        if entry.size > bound:
            raise ValueError(f"member {name!r}: {entry.size} bytes, over the {bound} allowed")
        suffix = _split_name(name)[1]
        if suffix not in MEMBER_SUFFIXES:
            raise ValueError(f"member {name!r}: unexpected member suffix {suffix!r}")
        if suffix in ("json", "cls") and entry.size > MAX_SMALL_MEMBER:
            raise ValueError(f"member {name!r}: {entry.size} bytes, over {MAX_SMALL_MEMBER}")

    return check


def _split_name(name: str) -> tuple[str, str]:
    """(key, suffix): the suffix starts at the first dot of the last path component."""
    slash = name.rfind("/") + 1
    dot = name.find(".", slash)
    return (name, "") if dot < 0 else (name[:dot], name[dot + 1 :])


def iter_raw_samples(f, declared: int) -> Iterator[dict]:
    """Raw samples (``__key__`` + member bytes) of a tar stream, members checked one by one."""
    current: dict = {}
    for entry, data in tar_members(f, _member_check(declared)):
        key, suffix = _split_name(entry.name)
        if current and key != current["__key__"]:
            yield current
            current = {}
        if suffix in current:
            raise ValueError(f"member {entry.name!r}: duplicated in sample {key!r}")
        current.setdefault("__key__", key)
        current[suffix] = data
    if current:
        yield current


def checked_raw_samples(f, entry: dict) -> Iterator[dict]:
    """Raw samples of one store tar (``entry``: its manifest path, bytes, sha256): at most the
    declared bytes are read, every member is checked, and the size and sha256 are compared
    with the manifest after the last sample. Raises StoreCorruptError ``<tar>: <reason>``."""
    name = entry["path"]
    stream = _CheckedStream(f, name, int(entry["bytes"]))
    buffered = io.BufferedReader(stream, 1 << 16)
    try:
        yield from iter_raw_samples(buffered, stream.declared)
        stream.finish(entry.get("sha256"))
    except StoreCorruptError:
        raise
    except (ValueError, KeyError, EOFError) as exc:
        raise StoreCorruptError(f"{name}: {str(exc)[:300]}") from None


def iter_tar_samples(f, entry: dict, limits: SampleLimits | None) -> Iterator[dict]:
    """Checked, decoded samples of one tar (``entry``: its manifest path, bytes, sha256).

    Raises StoreCorruptError naming the shard and the reason; the whole tar's size and
    sha256 are compared with the manifest once it has been read.
    """
    for raw in checked_raw_samples(f, entry):
        try:
            sample = parse_sample(raw, limits)
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            reason = f"sample {raw['__key__']!r}: {exc}"
            raise StoreCorruptError(f"{entry['path']}: {reason[:300]}") from None
        yield sample


def count_tar_samples(path: Path) -> int:
    """Samples in a local tar file, every member checked (no dtype/shape limits: see verify)."""
    entry = {"path": Path(path).name, "bytes": Path(path).stat().st_size, "sha256": None}
    with open(path, "rb") as f:
        return sum(1 for _ in iter_tar_samples(f, entry, None))

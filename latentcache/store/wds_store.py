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

Reading treats a tar as hostile input (another team's, or a server's)::

    tar stream ─► _CheckedStream: at most the manifest's bytes, sha256 compared at the end
      └► iter_raw_samples: regular members only (no links, devices, absolute or '..' names),
         each member within the declared tar size, known suffixes, grouped by key
      └► parse_sample: the .npy header is decompressed and read first: dtype (never object:
         nothing is unpickled), channels and h, w checked against SampleLimits; then exactly
         the bytes that header declares are gunzipped (a bomb stops there); label in range;
         latent_shape consistent

Every refusal is a StoreCorruptError with one line: ``<shard>: <member>: <reason>``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentcache.atomic import atomic_write
from latentcache.errors import StoreCorruptError
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
    "ArraySpec",
    "SampleLimits",
    "iter_tar_samples",
    "iter_raw_samples",
    "read_npy_checked",
]

WDS_DIR = "wds"
ARRAY_MEMBERS = ("y_hat", "scales_hat", "z_hat")
ARRAY_SUFFIXES = (".npy.gz", ".npy")  # gzip'd or plain .npy; both decoded with the same checks
MEMBER_SUFFIXES = (
    *(f"{a}{x}" for a in ARRAY_MEMBERS for x in ARRAY_SUFFIXES),
    "cls",
    "json",
    "y_string",
    "z_string",
)
MAX_MEMBER_BYTES = 256 * 2**20
MAX_NPY_HEADER = 4096
MAX_SMALL_MEMBER = 1 << 20  # .json and .cls


def tar_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def npy_bytes(a: np.ndarray) -> bytes:
    """``.npy`` bytes, gzip'd with a fixed mtime so equal arrays give equal bytes."""
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)


def load_npy(b: bytes, spec: ArraySpec | None = None, gzipped: bool = True) -> np.ndarray:
    """A member's array. The .npy header is read (and checked against ``spec``) first; then
    exactly the bytes it declares are decompressed, never more (a gzip bomb stops there)."""
    spec = spec or ArraySpec.unchecked()
    if not gzipped:
        return read_npy_checked(b, spec)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = d.decompress(b, MAX_NPY_HEADER + 16)
        shape, fortran, dtype, offset = _npy_header(head, spec)
        total = offset + _nbytes(shape, dtype)
        raw = head + d.decompress(d.unconsumed_tail, max(total - len(head), 0) + 1)
    except zlib.error as exc:
        raise ValueError(f"not valid gzip ({exc})") from None
    if len(raw) > total:
        raise ValueError(
            f"gunzips to more than the {total} bytes its .npy header declares (gzip bomb)"
        )
    if not d.eof or d.unused_data:
        raise ValueError("truncated gzip, or bytes after its end")
    return _array(raw, shape, fortran, dtype, offset)


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


@dataclass(frozen=True)
class ArraySpec:
    """What one array member must be: dtype, channel count, at most ``max_hw`` spatially."""

    dtype: str
    channels: int | None
    max_hw: tuple[int, int]

    @classmethod
    def unchecked(cls) -> ArraySpec:  # writers' own round trips; never used on store input
        return cls("", None, (1 << 16, 1 << 16))


@dataclass(frozen=True)
class SampleLimits:
    """What the manifest declares for one split's samples (``LatentStore.sample_limits``)."""

    arrays: dict[str, ArraySpec]  # y_hat and the stored scales (scales_hat or z_hat)
    num_classes: int
    scales_name: str


def read_npy_checked(raw: bytes, spec: ArraySpec) -> np.ndarray:
    """An array from ``.npy`` bytes; dtype and shape checked before the data is touched."""
    shape, fortran, dtype, offset = _npy_header(raw, spec)
    return _array(raw, shape, fortran, dtype, offset)


def _npy_header(raw: bytes, spec: ArraySpec) -> tuple[tuple, bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of .npy bytes, checked against ``spec``."""
    fp = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(fp)
        reader = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }
        if version not in reader:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = reader[version](fp, max_header_size=MAX_NPY_HEADER)
    except ValueError as exc:
        raise ValueError(f"not a valid .npy ({str(exc)[:120]})") from None
    _check_header(shape, dtype, spec)
    return shape, fortran, dtype, fp.tell()


def _nbytes(shape: tuple, dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _array(raw: bytes, shape: tuple, fortran: bool, dtype: np.dtype, offset: int) -> np.ndarray:
    n = _nbytes(shape, dtype)
    if len(raw) - offset != n:
        raise ValueError(f"holds {len(raw) - offset} data bytes, its .npy header declares {n}")
    data = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape, dtype=np.int64)), offset=offset)
    return data.reshape(shape, order="F" if fortran else "C").copy()


def _check_header(shape: tuple, dtype: np.dtype, spec: ArraySpec) -> None:
    if dtype.hasobject:
        raise ValueError("object dtype: a pickled .npy, refused (nothing is unpickled)")
    if spec.dtype and dtype != np.dtype(spec.dtype):
        raise ValueError(f"dtype {dtype}, manifest says {spec.dtype}")
    if spec.channels is None:
        return
    if len(shape) != 3 or shape[0] != spec.channels:
        raise ValueError(f"shape {shape}, manifest says ({spec.channels}, h, w)")
    if shape[1] > spec.max_hw[0] or shape[2] > spec.max_hw[1]:
        raise ValueError(
            f"shape {shape} is larger than the split's latent size {tuple(spec.max_hw)} (oversized array)"
        )


def parse_sample(raw: dict, limits: SampleLimits | None = None) -> dict:
    """Decode one raw webdataset sample (bytes values) into arrays, refusing anything odd."""
    unknown = [k for k in raw if not k.startswith("__") and k not in MEMBER_SUFFIXES]
    if unknown:
        raise ValueError(f"unexpected members {unknown}")
    try:
        info = json.loads(raw["json"])
        label = int(raw["cls"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"bad or missing .json / .cls member ({exc})") from None
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
                out[name] = _decode_member(raw[f"{name}{suffix}"], spec, suffix, name)
    for name in ("y_string", "z_string"):
        if name in raw:
            out[name] = bytes(raw[name])
    if limits is not None:
        _check_sample(out, limits)
    return out


def _decode_member(b: bytes, spec: ArraySpec, suffix: str, name: str) -> np.ndarray:
    try:
        return load_npy(b, spec, gzipped=suffix.endswith(".gz"))
    except ValueError as exc:
        raise ValueError(f"{name}{suffix}: {exc}") from None


def _check_sample(out: dict, limits: SampleLimits) -> None:
    missing = [n for n in ("y_hat", limits.scales_name) if n not in out]
    if missing:
        raise ValueError(f"missing array members {missing}")
    if not 0 <= out["label"] < limits.num_classes:
        raise ValueError(f"label {out['label']} outside 0..{limits.num_classes - 1}")
    hw = tuple(int(v) for v in out["latent_shape"].ravel())
    if hw != out["y_hat"].shape[1:]:
        raise ValueError(f"latent_shape {hw} is not y_hat's {out['y_hat'].shape[1:]}")
    if limits.scales_name == "scales_hat" and out["scales_hat"].shape != out["y_hat"].shape:
        raise ValueError(
            f"scales_hat {out['scales_hat'].shape} is not y_hat's {out['y_hat'].shape}"
        )


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


def _member_name(member: tarfile.TarInfo, declared: int) -> str:
    name = member.name
    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        raise ValueError(f"member {name!r}: absolute or '..' path (path traversal)")
    if member.issym() or member.islnk():
        raise ValueError(f"member {name!r}: a link to {member.linkname!r}, refused")
    if not member.isreg() or member.issparse():
        raise ValueError(f"member {name!r}: not a regular file (device, fifo or directory)")
    bound = min(declared, MAX_MEMBER_BYTES)
    if member.size > bound:
        raise ValueError(f"member {name!r}: {member.size} bytes, over the {bound} allowed")
    base = name.rsplit("/", 1)[-1]
    key, _, suffix = base.partition(".")
    if suffix not in MEMBER_SUFFIXES:
        raise ValueError(f"member {name!r}: unexpected member suffix {suffix!r}")
    if suffix in ("json", "cls") and member.size > MAX_SMALL_MEMBER:
        raise ValueError(f"member {name!r}: {member.size} bytes, over {MAX_SMALL_MEMBER}")
    return name[: len(name) - len(base)] + key, suffix


def iter_raw_samples(f, declared: int) -> Iterator[dict]:
    """Raw samples (``__key__`` + member bytes) of a tar stream, members checked one by one."""
    with tarfile.open(fileobj=f, mode="r|") as tf:
        current: dict = {}
        for member in tf:
            key, suffix = _member_name(member, declared)
            if current and key != current["__key__"]:
                yield current
                current = {}
            if suffix in current:
                raise ValueError(f"member {member.name!r}: duplicated in sample {key!r}")
            current.setdefault("__key__", key)
            current[suffix] = tf.extractfile(member).read(member.size)
        if current:
            yield current


def iter_tar_samples(f, entry: dict, limits: SampleLimits | None) -> Iterator[dict]:
    """Checked, decoded samples of one tar (``entry``: its manifest path, bytes, sha256).

    Raises StoreCorruptError naming the shard and the reason; the whole tar's size and
    sha256 are compared with the manifest once it has been read.
    """
    name = entry["path"]
    stream = _CheckedStream(f, name, int(entry["bytes"]))
    buffered = io.BufferedReader(stream, 1 << 16)
    try:
        for raw in iter_raw_samples(buffered, stream.declared):
            try:
                sample = parse_sample(raw, limits)
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"sample {raw['__key__']!r}: {exc}") from None
            yield sample
        stream.finish(entry.get("sha256"))
    except StoreCorruptError:
        raise
    except (ValueError, KeyError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise StoreCorruptError(f"{name}: {str(exc)[:300]}") from None


def count_tar_samples(path: Path) -> int:
    """Samples in a local tar file, every member checked (no dtype/shape limits: see verify)."""
    entry = {"path": Path(path).name, "bytes": Path(path).stat().st_size, "sha256": None}
    with open(path, "rb") as f:
        return sum(1 for _ in iter_tar_samples(f, entry, None))

"""Download specs: what to fetch for a dataset, its recorded checksum, and what it unpacks to.

::

    data_manifests/downloads/<dataset>.json ──► load_spec(name) ──► DownloadSpec
        files[i]: filename, urls (first = primary), checksum {algorithm, value, source} | null,
                  format tar | zip | file, provides (paths it creates under the dataset root),
                  expect (paths that must exist after unpacking), max_bytes, max_members

A spec is data, committed in the package beside the split lists. ``checksum`` is the value a
publisher or a named library records for the archive; where none is recorded anywhere it is
``null`` with a ``checksum_note`` saying so, and the file is only fetched when the user passes
``trust_unverified`` (the sha256 computed then is recorded as local, never as a publisher's).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from latentcache.errors import ConfigError
from latentcache.manifests import download_spec_path, manifest_dir

__all__ = [
    "Checksum",
    "FileSpec",
    "DownloadSpec",
    "ALGORITHMS",
    "FORMATS",
    "load_spec",
    "available_specs",
    "spec_path",
]

ALGORITHMS = {"md5": 32, "sha1": 40, "sha256": 64}  # name -> hex digits
FORMATS = ("tar", "zip", "file")
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    value: str
    source: str  # who records it (publisher page, library file and commit)

    def __post_init__(self) -> None:
        digits = ALGORITHMS.get(self.algorithm)
        if digits is None:
            raise ConfigError(
                f'Invalid checksum algorithm "{self.algorithm}", should be one of {sorted(ALGORITHMS)}'
            )
        if len(self.value) != digits or not _HEX.match(self.value):
            raise ConfigError(
                f'Invalid {self.algorithm} "{self.value}", should be {digits} lowercase hex digits'
            )


@dataclass(frozen=True)
class FileSpec:
    filename: str
    urls: tuple[str, ...]
    checksum: Checksum | None
    format: str
    provides: tuple[str, ...]
    expect: tuple[str, ...] = ()
    max_bytes: int = 1 << 30  # bound on the download and on the unpacked total
    max_members: int = 100_000
    checksum_note: str = ""

    def __post_init__(self) -> None:
        if not self.filename or "/" in self.filename or self.filename.startswith("."):
            raise ConfigError(f'Invalid file name "{self.filename}" in a download spec')
        if not self.urls:
            raise ConfigError(f"{self.filename}: a download spec needs at least one URL")
        if self.format not in FORMATS:
            raise ConfigError(f'Invalid format "{self.format}", should be one of {FORMATS}')
        if not self.provides or (self.format == "file" and len(self.provides) != 1):
            raise ConfigError(f"{self.filename}: provides must name what it creates")
        for rel in (*self.provides, *self.expect):
            check_relpath(rel)
        for name in ("max_bytes", "max_members"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f'Invalid {name} "{getattr(self, name)}", should be >= 1')

    @classmethod
    def from_dict(cls, d: dict) -> FileSpec:
        checksum = d.get("checksum")
        return cls(
            filename=d["filename"],
            urls=tuple(d["urls"]),
            checksum=Checksum(**checksum) if checksum else None,
            format=d["format"],
            provides=tuple(d["provides"]),
            expect=tuple(d.get("expect", ())),
            max_bytes=d.get("max_bytes", 1 << 30),
            max_members=d.get("max_members", 100_000),
            checksum_note=d.get("checksum_note", ""),
        )


@dataclass(frozen=True)
class DownloadSpec:
    dataset: str
    name: str
    files: tuple[FileSpec, ...]
    notes: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> DownloadSpec:
        try:
            return cls(
                dataset=d["dataset"],
                name=d.get("name", d["dataset"]),
                files=tuple(FileSpec.from_dict(f) for f in d["files"]),
                notes=d.get("notes", ""),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"download spec is missing or has a bad field: {exc}") from None

    @property
    def unverified(self) -> list[FileSpec]:
        return [f for f in self.files if f.checksum is None]


def check_relpath(rel: str) -> str:
    """``rel`` if it is a relative POSIX path without ``..``, ``.`` or empty parts."""
    parts = rel.split("/") if isinstance(rel, str) else [""]
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"{rel!r}: a download spec path must be relative, without '..'")
    return rel


def spec_path(name: str) -> Path:
    return download_spec_path(name)


def available_specs() -> list[str]:
    folder = manifest_dir() / "downloads"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def load_spec(name: str) -> DownloadSpec:
    """The committed spec of dataset ``name`` (``data_manifests/downloads/<name>.json``)."""
    path = spec_path(name)
    if not path.is_file():
        raise ConfigError(f'No download spec for dataset "{name}". Available: {available_specs()}')
    spec = DownloadSpec.from_dict(json.loads(path.read_text()))
    if spec.dataset != name:
        raise ConfigError(f"{path}: its dataset is {spec.dataset!r}, not {name!r}")
    return spec

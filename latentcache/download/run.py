"""``latentcache download``: fetch, check and unpack a dataset from its committed download spec.

::

    DownloadConfig ─► spec (data_manifests/downloads/<dataset>.json) ─► root (--data-root or
      $LATENTCACHE_DATA/<dataset> or ~/.cache/latentcache/datasets/<dataset>)
      └► per file: everything it provides already under root? ─► nothing to do (no network)
           <root>/downloads/<file> there (placed by hand, or kept)? ─► check it
           else fetch into <root>/downloads/<file>.part (range resume; the mirror's host if
           given) ─► checksum == recorded ? rename to <file>
                                          : keep it aside as <file>.bad, one-line error
           ─► unpack into <root>/downloads/.extract-* (members checked) ─► rename what it
              provides into <root> ─► remove the archive if fetched here (unless keep_archives)
      └► <root>/downloads/latentcache-download.json: what was fetched from where, and how checked
    (all under <root>/downloads/.lock: one download per data root at a time)

A file whose spec records no checksum is refused unless ``trust_unverified``; then its sha256
is computed and recorded as ``sha256_local`` (a record of what was fetched, not a check).
Nothing the user already has under ``root`` is removed or overwritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from latentcache.atomic import write_json_atomic
from latentcache.datasets.base import default_data_root
from latentcache.download.extract import extract_archive
from latentcache.download.fetch import Unreachable, fetch, file_digest
from latentcache.download.spec import DownloadSpec, FileSpec, load_spec
from latentcache.errors import ChecksumError, ConfigError, DownloadError

__all__ = [
    "DownloadConfig",
    "DownloadResult",
    "run_download",
    "MIRROR_ENV",
    "RECORD_NAME",
    "mirror_urls",
]

logger = logging.getLogger(__name__)

MIRROR_ENV = "LATENTCACHE_MIRROR"
DOWNLOADS = "downloads"
RECORD_NAME = "latentcache-download.json"


@dataclass(frozen=True)
class DownloadConfig:
    dataset: str
    data_root: str | None = None
    mirror: str | None = None  # None: $LATENTCACHE_MIRROR when set, else the spec's URLs
    trust_unverified: bool = False  # fetch files whose spec records no checksum
    keep_archives: bool = False
    progress: bool = True  # a progress bar (bytes, rate) when stderr is a terminal

    @property
    def root(self) -> Path:
        if self.data_root:
            return Path(self.data_root).expanduser()
        return default_data_root(self.dataset)


@dataclass(frozen=True)
class DownloadResult:
    dataset: str
    root: Path
    fetched: tuple[str, ...] = ()  # files whose bytes came over the network in this run
    installed: tuple[str, ...] = ()  # files unpacked (or placed) into root in this run
    unverified: dict = field(default_factory=dict)  # file name -> sha256 computed here

    @property
    def did_nothing(self) -> bool:
        return not self.fetched and not self.installed


def run_download(config: DownloadConfig, spec: DownloadSpec | None = None) -> DownloadResult:
    """Make ``config.dataset`` present under its root; a second call finds it and does nothing."""
    spec = spec or load_spec(config.dataset)
    root = config.root
    todo = [f for f in spec.files if not _present(root, f)]
    if not todo:
        logger.info("%s: already present under %s; nothing to do", spec.name, root)
        return DownloadResult(spec.dataset, root)
    _refuse_unverified(spec, todo, config, root)
    with _exclusive(root / DOWNLOADS / ".lock"):
        todo = [f for f in spec.files if not _present(root, f)]  # another run may have finished
        return _fetch_all(spec, todo, root, config)


def _fetch_all(
    spec: DownloadSpec, todo: list[FileSpec], root: Path, config: DownloadConfig
) -> DownloadResult:
    fetched, installed, unverified = [], [], {}
    for f in todo:
        archive, came_over_network, record = _obtain(f, root, config)
        if f.checksum is None:
            unverified[f.filename] = record["sha256_local"]
        # an archive placed by hand is the user's: kept; one fetched here goes once unpacked
        _install(f, archive, root, keep=config.keep_archives or not came_over_network)
        _record(root, f.filename, record)
        fetched += [f.filename] if came_over_network else []
        installed.append(f.filename)
    return DownloadResult(spec.dataset, root, tuple(fetched), tuple(installed), unverified)


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """One download at a time per data root (two would append to the same ``.part``)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DownloadError(
                f"another download into {lock.parent.parent} is running (it holds {lock}); "
                "wait for it, or stop it and re-run"
            ) from None
        yield
    finally:
        os.close(fd)


def _present(root: Path, f: FileSpec) -> bool:
    return all((root / rel).exists() for rel in f.provides)


def _refuse_unverified(
    spec: DownloadSpec, todo: list[FileSpec], config: DownloadConfig, root: Path
) -> None:
    missing = [f for f in todo if f.checksum is None]
    if missing and not config.trust_unverified:
        f = missing[0]
        raise ConfigError(
            f"{spec.name}: no publisher or library records a checksum for {f.filename} "
            f"({f.checksum_note or 'none known'}), so it cannot be verified; to fetch it "
            f"anyway run `latentcache download {spec.dataset} --trust-unverified` (its sha256 is "
            f"then recorded as computed here), or place the unpacked data so that "
            f"{root / f.provides[0]} exists"
        )


def mirror_urls(f: FileSpec, mirror: str | None) -> tuple[str, ...]:
    """The URLs to try: ``<mirror>/<file name>`` when a mirror is given, else the spec's."""
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    if mirror:
        return (f"{mirror.rstrip('/')}/{f.filename}",)
    return f.urls


def _obtain(f: FileSpec, root: Path, config: DownloadConfig) -> tuple[Path, bool, dict]:
    """The checked archive in ``<root>/downloads``, whether it was fetched now, and its record."""
    final = root / DOWNLOADS / f.filename
    if final.exists():
        logger.info("%s: found %s; checking it", f.filename, final)
        return final, False, _verify(f, final, final, f"file placed at {final}")
    part = final.with_name(f.filename + ".part")
    url = _fetch_any(f, part, root, config)
    record = _verify(f, part, final, url)
    os.replace(part, final)
    return final, True, record


def _fetch_any(f: FileSpec, part: Path, root: Path, config: DownloadConfig) -> str:
    failures = []
    for url in mirror_urls(f, config.mirror):
        if part.exists():
            logger.info("%s: resuming at %d bytes from %s", f.filename, part.stat().st_size, url)
        try:
            with _Bar(f.filename, config.progress) as bar:
                fetch(url, part, max_bytes=f.max_bytes, progress=bar)
            return url
        except Unreachable as exc:
            failures.append(f"{url} ({exc})")
    raise DownloadError(_offline_message(f, root, failures))


def _offline_message(f: FileSpec, root: Path, failures: list[str]) -> str:
    check = f" ({f.checksum.algorithm} {f.checksum.value})" if f.checksum else ""
    return (
        f"could not fetch {f.filename} from {'; '.join(failures)}. By hand: put {f.filename}"
        f"{check} in {root / DOWNLOADS}/ and re-run, or unpack it so that "
        f"{root / f.provides[0]} exists; or fetch from another host with --mirror URL "
        f"(or ${MIRROR_ENV}), which serves {f.filename} under that URL"
    )


def _verify(f: FileSpec, path: Path, final: Path, origin: str) -> dict:
    """The file's record if its checksum matches the spec; else set it aside and refuse."""
    record = {"origin": origin, "bytes": path.stat().st_size}
    if f.checksum is None:
        record.update(sha256_local=file_digest(path, "sha256"), verified=False)
        logger.warning(
            "%s: no recorded checksum; fetched unverified, sha256 %s (computed here)",
            f.filename, record["sha256_local"],
        )  # fmt: skip
        return record
    got = file_digest(path, f.checksum.algorithm)
    if got != f.checksum.value:
        aside = _set_aside(path, final)
        raise ChecksumError(
            f"{f.filename}: {f.checksum.algorithm} expected {f.checksum.value}, got {got} "
            f"(from {origin}); kept aside as {aside}, nothing else changed"
        )
    record.update(
        algorithm=f.checksum.algorithm,
        checksum=f.checksum.value,
        checksum_source=f.checksum.source,
        verified=True,
    )
    return record


def _set_aside(path: Path, final: Path) -> Path:
    aside = final.with_name(final.name + ".bad")
    n = 1
    while aside.exists():
        aside = final.with_name(f"{final.name}.bad{n}")
        n += 1
    os.replace(path, aside)
    return aside


def _install(f: FileSpec, archive: Path, root: Path, keep: bool) -> None:
    """Unpack (or place) ``archive`` so that what ``f`` provides appears under ``root``."""
    downloads = root / DOWNLOADS
    for stale in downloads.glob(f".extract-{f.filename}-*"):
        shutil.rmtree(stale, ignore_errors=True)  # a crashed earlier run's temporary folder
    tmp = Path(tempfile.mkdtemp(prefix=f".extract-{f.filename}-", dir=downloads))
    try:
        unpacked = tmp / "x"
        if f.format == "file":
            (unpacked / f.provides[0]).parent.mkdir(parents=True)
            shutil.copyfile(archive, unpacked / f.provides[0])
        else:
            logger.info("%s: unpacking", f.filename)
            extract_archive(
                archive, unpacked, f.format, max_bytes=f.max_bytes, max_members=f.max_members
            )
        _check_layout(f, unpacked)
        for rel in f.provides:
            dest = root / rel
            if not dest.exists():  # what the user already has stays as it is
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.rename(unpacked / rel, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not keep:
        archive.unlink()


def _check_layout(f: FileSpec, unpacked: Path) -> None:
    missing = [rel for rel in (*f.provides, *f.expect) if not (unpacked / rel).exists()]
    if missing:
        top = sorted(p.name for p in unpacked.iterdir())[:5] if unpacked.is_dir() else []
        raise DownloadError(
            f"{f.filename}: unpacked, but {missing[0]} is not in it (its top level holds "
            f"{top}); the archive is not the one this spec describes"
        )


def _record(root: Path, filename: str, record: dict) -> None:
    import json

    path = root / DOWNLOADS / RECORD_NAME
    records = json.loads(path.read_text()) if path.is_file() else {}
    records[filename] = record
    write_json_atomic(path, records)


class _Bar:
    """A tqdm bar in bytes with the rate, opened when the size is known; off when not a tty."""

    def __init__(self, name: str, enabled: bool):
        self.name, self.enabled, self.bar = name, enabled and sys.stderr.isatty(), None

    def start(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(
            total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
            desc=self.name, file=sys.stderr,
        )  # fmt: skip

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

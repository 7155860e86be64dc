"""Safe extraction of tar and zip archives into a fresh folder.

::

    extract_archive(archive, dest, fmt, max_bytes, max_members)
      every member is checked before it is written:
        name: relative, no '..', no backslash, no NUL          ─► else UnsafeArchiveError
        type: file or folder; a link only if its target stays inside; no devices, FIFOs
        sizes: the running total of member sizes <= max_bytes, members <= max_members
      tar: then written with tarfile's "data" filter as a second guard (3.11.4+, 3.10.12+)
      zip: written by zipfile, which never reads past a member's declared size

``dest`` is a temporary folder the caller renames into place once the whole archive is out,
so a refused or broken archive leaves nothing visible (see :mod:`latentcache.download.run`).
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from latentcache.errors import UnsafeArchiveError

__all__ = ["extract_archive", "check_member_name"]


def check_member_name(archive: Path, name: str) -> str:
    """``name`` normalised if it stays inside the folder, else UnsafeArchiveError naming it."""
    clean = name.rstrip("/")
    parts = clean.split("/")
    if (
        not clean
        or clean.startswith("/")
        or "\\" in clean
        or "\x00" in clean
        or (len(parts[0]) == 2 and parts[0][1] == ":")
        or ".." in parts
    ):
        raise UnsafeArchiveError(
            f"{archive.name}: member {name!r} would be written outside the folder "
            "(absolute path or '..'); refusing to extract it"
        )
    return posixpath.normpath(clean)


def _check_link(archive: Path, name: str, target: str, hard: bool) -> None:
    base = "" if hard else posixpath.dirname(name)  # hard links name a member path
    joined = posixpath.normpath(posixpath.join(base, target))
    if target.startswith("/") or joined == ".." or joined.startswith("../"):
        raise UnsafeArchiveError(
            f"{archive.name}: member {name!r} is a link to {target!r}, outside the folder; "
            "refusing to extract it"
        )


class _Budget:
    def __init__(self, archive: Path, max_bytes: int, max_members: int):
        self.archive, self.max_bytes, self.max_members = archive, max_bytes, max_members
        self.bytes = self.members = 0

    def take(self, name: str, size: int) -> None:
        self.bytes += max(size, 0)
        self.members += 1
        if self.bytes > self.max_bytes or self.members > self.max_members:
            raise UnsafeArchiveError(
                f"{self.archive.name}: more than {self.max_bytes} bytes or {self.max_members} "
                f"members once unpacked (at {name!r}); refusing to extract further"
            )


def _checked_tar_members(
    tf: tarfile.TarFile, archive: Path, budget: _Budget
) -> Iterator[tarfile.TarInfo]:
    for member in tf:
        name = check_member_name(archive, member.name)
        if member.issym() or member.islnk():
            _check_link(archive, name, member.linkname, hard=member.islnk())
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(
                f"{archive.name}: member {member.name!r} is a device or FIFO; refusing to extract it"
            )
        budget.take(name, member.size)
        yield member


def _extract_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in _checked_tar_members(tf, archive, budget):
                tf.extract(member, dest, **kwargs)
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"{archive.name}: {exc}; refusing to extract it") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnsafeArchiveError(f"{archive.name}: not a readable tar archive ({exc})") from None


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:  # every name, type and size is checked before any byte is written
                name = check_member_name(archive, info.filename)
                budget.take(name, info.file_size)
                if stat.S_ISLNK(info.external_attr >> 16):
                    _check_link(archive, name, zf.read(info).decode("utf-8", "replace"), False)
            for info in infos:
                zf.extract(info, dest)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise UnsafeArchiveError(f"{archive.name}: not a readable zip archive ({exc})") from None


def extract_archive(
    archive: Path, dest: Path, fmt: str, *, max_bytes: int, max_members: int
) -> None:
    """Unpack ``archive`` (``fmt``: tar, any compression, or zip) into the new folder ``dest``."""
    dest.mkdir(parents=True, exist_ok=False)
    budget = _Budget(archive, max_bytes, max_members)
    if fmt == "tar":
        _extract_tar(archive, dest, budget)
    elif fmt == "zip":
        _extract_zip(archive, dest, budget)
    else:
        raise ValueError(f'Invalid archive format "{fmt}", should be "tar" or "zip"')

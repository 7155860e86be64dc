"""Fetch one file into a ``.part`` file that survives interruption, resuming with byte ranges.

::

    fetch(url, part) ─► http(s)://: GET with ``Range: bytes=<part size>-`` when part exists
                        │   206 ─► append      200 (range ignored) ─► start over
                        │   416 with ``bytes */<part size>`` ─► already complete
                        │   connection dropped mid-body ─► retry from the new part size
                        └► s3:// gs:// file:// memory:// (fsspec) ─► open, seek(part size), append

Every chunk is written and flushed before the next is read, so Ctrl-C or a dropped connection
leaves a ``.part`` that the next call continues. A file longer than ``max_bytes`` is refused.
A host that cannot be reached raises :class:`Unreachable` (the caller tries the next URL and
then says where to place the file by hand); a body that keeps breaking off raises
:class:`DownloadError`.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol

from latentcache import __version__
from latentcache.errors import ConfigError, DownloadError

__all__ = ["fetch", "file_digest", "Unreachable", "Progress", "CHUNK"]

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRIES = 3  # resumptions after a dropped connection, per call
TIMEOUT = 60  # seconds without a byte before a read gives up (then it resumes)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_TRANSIENT = (http.client.IncompleteRead, ConnectionError, TimeoutError, socket.timeout)


class Unreachable(Exception):
    """The URL could not be opened (no route, refused, DNS, HTTP error status, missing file)."""


class Progress(Protocol):
    def start(self, done: int, total: int | None) -> None: ...

    def update(self, n: int) -> None: ...


class _NoProgress:
    def start(self, done: int, total: int | None) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def fetch(
    url: str,
    part: Path,
    *,
    max_bytes: int,
    progress: Progress | None = None,
    retries: int = RETRIES,
) -> None:
    """Complete ``part`` with the bytes of ``url``, resuming from its current size."""
    progress = progress or _NoProgress()
    for attempt in range(retries + 1):
        try:
            if url.startswith(("http://", "https://")):
                return _fetch_http(url, part, max_bytes, progress)
            return _fetch_fsspec(url, part, max_bytes, progress)
        except _TRANSIENT as exc:
            size = _size(part)
            if attempt == retries:
                raise DownloadError(
                    f"{url}: the connection broke off {retries + 1} times, last at {size} bytes "
                    f"({type(exc).__name__}); re-run to resume from {part}"
                ) from None
            logger.warning(
                "%s: connection dropped at %d bytes (%s); resuming with a range request",
                url, size, type(exc).__name__,
            )  # fmt: skip


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _open_http(url: str, offset: int):
    headers = {"User-Agent": f"latentcache/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        total = _range_total(exc.headers.get("Content-Range")) if exc.code == 416 else None
        if offset and total == offset:
            return None  # the part is already whole
        if offset and total is not None and total < offset:
            raise DownloadError(
                f"{url}: the partial file is {offset} bytes, the server's file {total}; "
                "delete the .part file and re-run"
            ) from None
        raise Unreachable(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Unreachable(str(getattr(exc, "reason", exc))) from None


def _range_total(header: str | None) -> int | None:
    match = re.match(r"^bytes \*/(\d+)$", header or "")
    return int(match.group(1)) if match else None


def _fetch_http(url: str, part: Path, max_bytes: int, progress: Progress) -> None:
    offset = _size(part)
    resp = _open_http(url, offset)
    if resp is None:
        progress.start(offset, offset)
        return
    with resp:
        if offset and resp.status != 206:
            logger.info("%s: the server ignored the range request; starting over", url)
            offset = 0
        elif offset:
            _check_content_range(url, resp.headers.get("Content-Range"), offset)
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        _check_bound(url, total, max_bytes)
        progress.start(offset, total)
        _copy(resp, part, offset, max_bytes, progress, url)
    if total is not None and _size(part) != total:
        raise http.client.IncompleteRead(b"", total - _size(part))


def _check_content_range(url: str, header: str | None, offset: int) -> None:
    match = _CONTENT_RANGE.match(header or "")
    if not match or int(match.group(1)) != offset:
        raise DownloadError(
            f"{url}: asked for bytes from {offset}, the server answered Content-Range {header!r}"
        )


def _check_bound(url: str, total: int | None, max_bytes: int) -> None:
    if total is not None and total > max_bytes:
        raise DownloadError(
            f"{url}: {total} bytes, more than the {max_bytes} its download spec allows"
        )


def _copy(src, part: Path, offset: int, max_bytes: int, progress: Progress, url: str) -> None:
    part.parent.mkdir(parents=True, exist_ok=True)
    done = offset
    with open(part, "ab" if offset else "wb") as out:
        while chunk := src.read(CHUNK):
            done += len(chunk)
            _check_bound(url, done, max_bytes)
            out.write(chunk)
            out.flush()
            progress.update(len(chunk))


def _fetch_fsspec(url: str, part: Path, max_bytes: int, progress: Progress) -> None:
    from latentcache.store.location import locate

    try:
        loc = locate(url)
        total = int(loc.fs.size(loc.root))
    except ConfigError:
        raise
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from None
    _check_bound(url, total, max_bytes)
    offset = _size(part)
    if offset > total:
        offset = 0
    progress.start(offset, total)
    if offset == total:
        return
    with loc.fs.open(loc.root, "rb") as src:
        src.seek(offset)
        _copy(src, part, offset, max_bytes, progress, url)
    if _size(part) != total:
        raise http.client.IncompleteRead(b"", total - _size(part))


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file at ``path`` (md5, sha1 or sha256), read in 1 MiB chunks."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()

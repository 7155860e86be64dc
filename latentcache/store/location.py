"""Where a store lives: a local path or an fsspec URL, and safe paths inside it.

::

    "stores/minc-q4" | "file:///..." ─► LocalFileSystem, absolute root
    "memory://x" | "http(s)://host/x" ─► fsspec filesystem (HTTP: read-only)
    "s3://b/x" | "gs://b/x"          ─► s3fs / gcsfs, installed by the extras ``s3`` / ``gcs``

Manifest paths are relative POSIX paths; :func:`check_rel` refuses anything that could
reach outside the store (absolute, ``..``, backslashes, empty parts).
"""

from __future__ import annotations

import os
import re

from latentcache.errors import ConfigError, StoreCorruptError

__all__ = [
    "StoreLocation",
    "locate",
    "check_rel",
    "is_url",
    "require_local",
    "require_worker_access",
]

# scheme -> (module fsspec needs, the pip extra that installs it; None: a core dependency)
BACKENDS = {
    "http": ("aiohttp", None),
    "https": ("aiohttp", None),
    "s3": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
}
READ_ONLY = ("http", "https")
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def is_url(target: str | os.PathLike) -> bool:
    return bool(_URL.match(str(target)))


PROCESS_LOCAL = ("memory",)  # fsspec filesystems held in one process's memory


def require_worker_access(store: str | os.PathLike, workers: int) -> None:
    """Refuse a store that DataLoader worker processes cannot open: each worker starts with
    spawn, with its own empty memory filesystem, so a ``memory://`` store is not there."""
    match = _URL.match(str(store))
    if workers > 0 and match and match.group(1).lower() in PROCESS_LOCAL:
        raise ConfigError(
            f"{store}: a {match.group(1)}:// store lives in this process's memory, which "
            f"DataLoader workers (new processes) do not share; use --workers 0, or "
            f"`latentcache pull {store} DIR` and read the folder"
        )


def require_local(out: str | os.PathLike) -> None:
    """``encode`` writes to local or shared POSIX folders only (its lock and atomic renames)."""
    if is_url(out):
        raise ConfigError(
            f"encode writes to a local or shared POSIX folder path, not the URL {out} (its lock "
            "and atomic renames need one); encode to a folder, then `latentcache push` it there"
        )


def check_rel(rel: str) -> str:
    """``rel`` if it is a safe store-relative POSIX path, else StoreCorruptError naming it."""
    parts = rel.split("/") if isinstance(rel, str) else [""]
    if (
        not isinstance(rel, str)
        or not rel
        or rel.startswith("/")
        or "\\" in rel
        or ":" in parts[0]
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise StoreCorruptError(f"{rel!r}: unsafe path in the manifest (absolute, '..' or empty)")
    return rel


class StoreLocation:
    """An fsspec filesystem and the store's root in it. ``local`` when it is a POSIX folder."""

    def __init__(self, target: str | os.PathLike):
        self.url = str(target)
        self.scheme = _URL.match(self.url).group(1).lower() if is_url(self.url) else "file"
        self.fs, self.root = _filesystem(self.url, self.scheme)
        self.local = self.scheme in ("file", "local")

    def join(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{check_rel(rel)}"

    def open(self, rel: str, mode: str = "rb", seekable: bool = False):
        """A store file opened for sequential reading (HTTP streams it, without range
        requests); ``seekable``: random access (over HTTP, byte ranges)."""
        kwargs = {"block_size": 0} if self.scheme in READ_ONLY and not seekable else {}
        return self.fs.open(self.join(rel), mode, **kwargs)

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.join(rel))

    def size(self, rel: str) -> int | None:
        """The file's size, None when it is absent, -1 when the server does not say."""
        try:
            info = self.fs.info(self.join(rel))
        except (FileNotFoundError, OSError):
            return None
        if info.get("type") == "directory":
            return None
        return -1 if info.get("size") is None else int(info["size"])

    def writable(self) -> None:
        if self.scheme in READ_ONLY:
            raise ConfigError(f"{self.url}: {self.scheme}:// stores are read-only")

    def __str__(self) -> str:
        return self.url


def locate(target: str | os.PathLike) -> StoreLocation:
    return target if isinstance(target, StoreLocation) else StoreLocation(target)


def _filesystem(url: str, scheme: str):
    import fsspec

    module, extra = BACKENDS.get(scheme, (None, None))
    if module is not None:
        try:
            __import__(module)
        except ImportError:
            fix = f"pip install 'latentcache[{extra}]'" if extra else f"pip install {module}"
            raise ConfigError(f"{scheme}:// stores need {module}: {fix}") from None
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"{url}: cannot open this location ({exc})") from None
    if scheme in ("file", "local"):
        root = os.path.abspath(os.path.expanduser(root))
    return fs, root.rstrip("/") or "/"

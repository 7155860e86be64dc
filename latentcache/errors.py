"""Error classes. Each refines a built-in so callers can catch either (zarr's convention)."""

from __future__ import annotations

__all__ = [
    "LatentCacheError",
    "ConfigError",
    "DatasetNotFoundError",
    "WeightsNotFoundError",
    "StoreExistsError",
    "StoreLockedError",
    "StaleRunError",
    "StoreCorruptError",
    "StoreNotFoundError",
    "CodecMismatchError",
    "CodecFileError",
    "RunNotFoundError",
    "SampleError",
    "DownloadError",
    "ChecksumError",
    "UnsafeArchiveError",
]


class LatentCacheError(Exception):
    """Base class of every error latentcache raises on purpose (the CLI prints these)."""


class ConfigError(LatentCacheError, ValueError):
    """An option or config value is invalid; the message names the value and the valid range."""


class DatasetNotFoundError(LatentCacheError, FileNotFoundError):
    """A dataset root is missing or does not look like the dataset."""


class WeightsNotFoundError(LatentCacheError, FileNotFoundError):
    """Codec weights are neither cached nor downloadable."""


class StoreExistsError(LatentCacheError, FileExistsError):
    """The output store exists and ``overwrite`` was not given."""


class StoreLockedError(LatentCacheError, BlockingIOError):
    """Another encoder holds the store's lock."""


class StaleRunError(LatentCacheError, RuntimeError):
    """A task of an earlier encode run tried to commit into a store that a later run now owns."""


class StoreCorruptError(LatentCacheError, OSError):
    """A store's files do not match its manifest."""


class StoreNotFoundError(LatentCacheError, FileNotFoundError):
    """A store (its manifest) or a file its manifest lists is missing."""


class CodecMismatchError(LatentCacheError, ValueError):
    """A store or checkpoint was made by a different codec than the one asked for."""


class CodecFileError(LatentCacheError, ValueError):
    """A codec weights file cannot be used; the message names the file and the reason."""


class RunNotFoundError(LatentCacheError, FileNotFoundError):
    """A folder given as a training run is not one (no checkpoint or config in it)."""


class SampleError(LatentCacheError, ValueError):
    """One sample cannot be encoded; it is skipped and recorded with this reason."""


class DownloadError(LatentCacheError, OSError):
    """A dataset file could not be fetched; the message names the URL and where to place it."""


class ChecksumError(LatentCacheError, ValueError):
    """A downloaded file's checksum differs from the recorded one (the file is kept aside)."""


class UnsafeArchiveError(LatentCacheError, ValueError):
    """An archive member would land outside the target, is a link or device, or is too large."""

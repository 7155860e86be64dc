"""Datasets fetch themselves: committed download specs, checked, resumable, safely unpacked."""

from latentcache.download.run import DownloadConfig, DownloadResult, run_download
from latentcache.download.spec import DownloadSpec, FileSpec, available_specs, load_spec

__all__ = [
    "DownloadConfig",
    "DownloadResult",
    "DownloadSpec",
    "FileSpec",
    "available_specs",
    "load_spec",
    "run_download",
]

"""Where the committed ``data_manifests/`` folder is: split lists, class lists, download specs.

``$LATENTCACHE_MANIFESTS``, else the copy packaged in an installed wheel
(``latentcache/data_manifests/``, read through importlib.resources), else the
``data_manifests/`` folder at the top of the source tree (editable installs, checkouts).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

__all__ = ["manifest_dir", "download_spec_path", "download_hint"]


def manifest_dir() -> Path:
    """The folder holding ``<dataset>/`` split files and ``downloads/<dataset>.json``."""
    env = os.environ.get("LATENTCACHE_MANIFESTS")
    if env:
        return Path(env).expanduser()
    packaged = importlib.resources.files("latentcache") / "data_manifests"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "data_manifests"


def download_spec_path(name: str) -> Path:
    """``data_manifests/downloads/<name>.json``: how dataset ``name`` fetches itself."""
    return manifest_dir() / "downloads" / f"{name}.json"


def download_hint(name: str, root: Path) -> str:
    """A sentence for "dataset missing" errors when ``name`` can fetch itself, else ''."""
    if not download_spec_path(name).is_file():
        return ""
    return (
        f" Or fetch it: `latentcache download {name} --data-root {root}` "
        "(or `latentcache encode --download ...`)."
    )

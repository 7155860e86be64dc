"""Atomic file writes: readers see the old file or the new one, never a part of one.

::

    atomic_write(path) ─► open .<name>.<pid>.<thread>.tmp beside path ─► caller writes
        ─► flush + fsync ─► os.replace(tmp, path)            (on any error: tmp removed)

    atomic_dir(path) ─► mkdtemp .<name>-* beside path ─► caller fills it
        ─► os.replace(tmp, path)                             (on any error: tmp removed)

Every file latentcache writes whole (store manifest, commit records, WebDataset shards, codec
and training checkpoints, evaluation results) goes through :func:`atomic_write`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_dir", "write_json_atomic"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    if mode not in ("wb", "w"):
        raise ValueError(f'Invalid mode "{mode}", should be "wb" or "w"')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling folder of ``path`` to fill; renamed to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """JSON with sorted keys (equal content is equal bytes), written atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, sort_keys=True, indent=1)
        f.write("\n")

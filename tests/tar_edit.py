"""Editing a store's tar as an attacker would: members out, members in, the manifest's
bytes and sha256 resealed so that only the content checks can refuse it."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

__all__ = ["read_members", "write_tar", "reseal"]


def read_members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as tf:
        return [(m, tf.extractfile(m).read()) for m in tf.getmembers()]


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)


def reseal(store: Path, rel: str) -> None:
    """Update the manifest's bytes and sha256 of ``rel``, as an attacker would."""
    m = json.loads((store / "manifest.json").read_text())
    data = (store / rel).read_bytes()
    for sh in m["shards"]:
        for files in sh["files"].values():
            for f in files:
                if f["path"] == rel:
                    f["bytes"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (store / "manifest.json").write_text(json.dumps(m, sort_keys=True, indent=1))

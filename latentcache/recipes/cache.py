"""Stage records: what makes a finished stage reusable.

A stage's key is the sha256 of its kind, its resolved config and its inputs' identities
(codec weights sha256, dataset index sha256, store manifest sha256, checkpoint sha256, ...).
A finished stage writes ``stage.json`` (key, config, inputs, identity of its output, time);
a later run with the same key reuses it and does no work.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["stage_key", "read_record", "write_record", "RECORD_NAME"]

RECORD_NAME = "stage.json"


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def stage_key(kind: str, config: dict, inputs: dict) -> str:
    """sha256 of (kind, resolved config, input identities)."""
    return hashlib.sha256(
        _canonical({"kind": kind, "config": config, "inputs": inputs})
    ).hexdigest()


def read_record(stage_dir: Path) -> dict | None:
    path = stage_dir / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a torn record: the stage runs again


def write_record(stage_dir: Path, record: dict) -> None:
    """Atomically (temporary name, rename), so a killed run never leaves a half record."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    tmp = stage_dir / f".{RECORD_NAME}.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
    os.replace(tmp, stage_dir / RECORD_NAME)

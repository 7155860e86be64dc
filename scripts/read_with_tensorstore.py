"""Read every array of a latentcache store's Zarr layout with tensorstore, an independent Zarr v3
implementation, and print one JSON line per array: path, shape, dtype, sha256 of its C-order bytes.

    .venv-tensorstore/bin/python scripts/read_with_tensorstore.py STORE

Needs only tensorstore and numpy (no latentcache, no zarr-python): ``make tensorstore``.
Exits non-zero if any array fails to open or read.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import tensorstore as ts


def array_paths(zarr_root: Path) -> list[Path]:
    """Folders whose zarr.json says ``node_type: array``, found by walking the metadata."""
    out = []
    for meta in sorted(zarr_root.rglob("zarr.json")):
        if json.loads(meta.read_text()).get("node_type") == "array":
            out.append(meta.parent)
    return out


def read_array(path: Path) -> np.ndarray:
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
    return np.asarray(ts.open(spec, read=True).result().read().result())


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0]) / "zarr"
    failed = 0
    for path in array_paths(root):
        rel = path.relative_to(root).as_posix()
        try:
            a = read_array(path)
        except Exception as exc:  # report every array, then fail
            print(f"{rel}: tensorstore cannot read it: {exc}", file=sys.stderr)
            failed += 1
            continue
        digest = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
        line = {"path": rel, "shape": list(a.shape), "dtype": a.dtype.str, "sha256": digest}
        print(json.dumps(line, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Official counts of a dataset (``data_manifests/<name>/counts.json``) against what an
adapter found: a difference is worth one warning (a partial download, another release),
never an error — an index of what is there is still useful."""

from __future__ import annotations

import json
import logging

from latentcache.datasets.imagefolder import manifest_dir

__all__ = ["expected_counts", "warn_if_counts_differ"]


def expected_counts(name: str) -> dict:
    """The committed ``counts.json`` of ``data_manifests/<name>/`` (empty when absent)."""
    path = manifest_dir() / name / "counts.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def warn_if_counts_differ(
    name: str, key: str, found: dict[str, int], log: logging.Logger, note: str = ""
) -> bool:
    """Warn once when ``found`` (per split) differs from ``counts.json[key]``; True if it did."""
    expected = expected_counts(name).get(key, {})
    differ = {s: (found.get(s, 0), n) for s, n in expected.items() if found.get(s, 0) != n}
    if differ:
        parts = ", ".join(f"{s} {got:,} (official {want:,})" for s, (got, want) in differ.items())
        log.warning("%s: %s differ from the official counts: %s%s", name, key, parts, note)
    return bool(differ)

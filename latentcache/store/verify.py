"""``verify``: does a store still match its manifest? Optionally re-decode every bitstream.

::

    manifest shards ─► each file: exists, size, sha256 ─► sample count (Zarr keys / tar members)
                 └─► --redecode: y/z strings ─► codec.latents.extract_latents ─► == stored y_hat, scales
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentcache.errors import StoreCorruptError
from latentcache.store.reader import LatentStore
from latentcache.store.zarr_store import valid_rows

__all__ = ["VerifyReport", "verify_store"]

logger = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    files_checked: int = 0
    samples_redecoded: int = 0
    problems: list[str] = field(default_factory=list)  # "<file>: <what is wrong>"

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_file(store: LatentStore, entry: dict, report: VerifyReport) -> bool:
    report.files_checked += 1
    problem = store.file_problem(entry)
    if problem:
        report.problems.append(f"{entry['path']}: {problem}")
    return problem is None


def _check_count(store: LatentStore, shard: dict, fmt: str, report: VerifyReport) -> None:
    if fmt == "webdataset":
        path = shard["files"]["webdataset"][0]["path"]
        try:  # every member and array checked against the manifest (wds_store)
            n = sum(1 for _ in store.wds_samples(shard["split"], [path]))
        except StoreCorruptError as exc:
            report.problems.append(str(exc))
            return
    else:
        start, stop = shard["rows"]
        n = int(valid_rows(store.zarr_split(shard["split"]).group["key"][start:stop]).sum())
        path = Path(f"zarr/{shard['split']} rows {start}:{stop}")
    if n != shard["count"]:
        report.problems.append(f"{path}: {n} samples, manifest says {shard['count']}")


def _check_totals(store: LatentStore, report: VerifyReport) -> None:
    m = store.manifest
    t = m["totals"]
    if t["indexed"] != t["stored"] + t["failed"] or t["failed"] != len(m["failures"]):
        report.problems.append(f"manifest.json: counts do not reconcile: {t}")
    if sum(sh["count"] for sh in m["shards"]) != t["stored"]:
        report.problems.append("manifest.json: shard counts do not add up to the stored total")


def verify_store(store: LatentStore, redecode: bool = False, codec=None) -> VerifyReport:
    """Check every shard's files and counts; with ``redecode``, re-decode bitstreams (needs ``codec``)."""
    report = VerifyReport()
    _check_totals(store, report)
    for shard in store.manifest["shards"]:
        for fmt, entries in shard["files"].items():
            intact = all([_check_file(store, e, report) for e in entries])
            if intact:
                _check_count(store, shard, fmt, report)
    if redecode and report.ok:
        _redecode(store, codec, report)
    return report


def _redecode(store: LatentStore, codec, report: VerifyReport) -> None:
    from latentcache.codec.latents import extract_latents

    if codec.weights_sha256 != store.codec["weights_sha256"]:
        report.problems.append(
            f"codec weights {codec.weights_sha256[:12]} are not the store's {store.codec['weights_sha256'][:12]}: cannot re-decode"
        )
        return
    if "zarr" not in store.formats:
        return _redecode_wds(store, codec, report, extract_latents)
    for split in store.splits:
        zs = store.zarr_split(split)
        for start, stop in zs.blocks():
            rows = zs.read(start, stop, bitstreams=True)
            for i, key in enumerate(rows["key"]):
                got = extract_latents(
                    codec.model, [rows["y_string"][i]], [rows["z_string"][i]], rows["z_shape"][i]
                )
                h, w = rows["latent_shape"][i]
                _compare(
                    report,
                    f"zarr/{split}:{key}",
                    got,
                    rows["y_hat"][i][:, :h, :w],
                    rows["scales_hat"][i][:, :h, :w],
                    store,
                )


def _redecode_wds(store, codec, report, extract_latents) -> None:
    for split in store.splits:
        for s in store.wds_samples(split):
            got = extract_latents(
                codec.model, [s["y_string"]], [s["z_string"]], s["info"]["z_shape"]
            )
            _compare(report, f"wds/{split}:{s['key']}", got, s["y_hat"], s["scales_hat"], store)


def _compare(report, where, got, y_hat, scales_hat, store) -> None:
    report.samples_redecoded += 1
    if not np.array_equal(got["y_hat"][0].numpy().astype(np.int16), y_hat):
        report.problems.append(f"{where}: stored y_hat differs from the re-decoded bitstream")
    expect = store.scales_to_float(_as_stored(got, store.scales_repr))
    if not np.array_equal(expect, scales_hat):
        report.problems.append(f"{where}: stored scales_hat differs from the re-decoded bitstream")


def _as_stored(got, repr_: str) -> np.ndarray:
    if repr_ == "index":
        return got["indexes"][0].numpy().astype(np.uint8)
    if repr_ == "z_hat":
        return got["z_hat"][0].round().numpy().astype(np.int16)
    return got["scales_hat"][0].numpy().astype(np.float16 if repr_ == "float16" else np.float32)

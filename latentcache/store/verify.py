"""``verify``: does a store still match its manifest? Optionally re-decode every bitstream.

::

    manifest ─► every listed file: exists, size, sha256   (shards' files + zarr_metadata)
             ├► Zarr: every file zarr's chunk-key encoding says a shard or the metadata needs
             │        is listed; sample counts from the keys (read through crc32c)
             ├► WebDataset: sample counts from the tar members
             └► --redecode: y/z strings ─► codec.latents.extract_latents ─► == the decoder's
                            y_hat rebuilt from the store, scales, means, for every layout

A problem is one line, ``<file>: <what is wrong>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentcache.errors import StoreCorruptError
from latentcache.store.reader import LatentStore
from latentcache.store.zarr_store import metadata_keys, read_rows, shard_keys

__all__ = ["VerifyReport", "verify_store"]

logger = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    files_checked: int = 0
    redecoded: dict[str, int] = field(default_factory=dict)  # layout -> samples re-decoded
    problems: list[str] = field(default_factory=list)  # "<file>: <what is wrong>"

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def samples_redecoded(self) -> int:
        return sum(self.redecoded.values())

    def redecoded_summary(self) -> str:
        """``36 samples re-decoded (18 webdataset, 18 zarr)``."""
        per = ", ".join(f"{n} {layout}" for layout, n in sorted(self.redecoded.items()))
        return f"{self.samples_redecoded} samples re-decoded ({per or 'none'})"


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
        try:
            group = store.zarr_split(shard["split"]).group
            n = len(read_rows(group, start, stop, ["key"])["key"])
        except StoreCorruptError as exc:
            report.problems.append(str(exc))
            return
        path = Path(f"zarr/{shard['split']} rows {start}:{stop}")
    if n != shard["count"]:
        report.problems.append(f"{path}: {n} samples, manifest says {shard['count']}")


def _check_listed(expected: list[str], entries: list[dict], report: VerifyReport) -> None:
    listed = {e["path"] for e in entries}
    report.problems += [
        f"{rel}: not listed in the manifest" for rel in expected if rel not in listed
    ]


def _check_zarr_metadata(store: LatentStore, report: VerifyReport) -> bool:
    """Every group and array zarr.json: listed, present, intact. True when the listed ones are
    intact (the layout can be opened)."""
    entries = store.manifest.get("zarr_metadata")
    if not entries:
        report.problems.append("manifest.json: lists no Zarr metadata (zarr_metadata)")
        return False
    if not all([_check_file(store, e, report) for e in entries]):
        return False
    try:
        expected = metadata_keys(store.zarr_root(), list(store.manifest["splits"]))
    except KeyError as exc:  # a split or array whose zarr.json is not listed, and gone
        report.problems.append(f"zarr: a node the manifest does not list is missing ({exc})")
        return False
    _check_listed(expected, entries, report)
    return True


def _check_zarr_shard(store: LatentStore, shard: dict, report: VerifyReport) -> None:
    """The shard's files, as zarr's chunk-key encoding names them, are all listed."""
    try:
        group = store.zarr_split(shard["split"]).group
        expected = shard_keys(group, shard["index"])
    except (KeyError, StoreCorruptError) as exc:  # its bitstream array's metadata is gone
        report.problems.append(f"zarr/{shard['split']} shard {shard['index']}: unreadable ({exc})")
        return
    _check_listed(expected, shard["files"]["zarr"], report)


def _check_totals(store: LatentStore, report: VerifyReport) -> None:
    m = store.manifest
    t = m["totals"]
    if t["indexed"] != t["stored"] + t["failed"] or t["failed"] != len(m["failures"]):
        report.problems.append(f"manifest.json: counts do not reconcile: {t}")
    if sum(sh["count"] for sh in m["shards"]) != t["stored"]:
        report.problems.append("manifest.json: shard counts do not add up to the stored total")


def verify_store(store: LatentStore, redecode: bool = False, codec=None) -> VerifyReport:
    """Check every listed file and every shard's count; with ``redecode``, re-decode every
    bitstream of every layout (needs ``codec``)."""
    report = VerifyReport()
    _check_totals(store, report)
    zarr_ok = "zarr" in store.formats and _check_zarr_metadata(store, report)
    for shard in store.manifest["shards"]:
        for fmt, entries in shard["files"].items():
            intact = all([_check_file(store, e, report) for e in entries])
            if fmt == "zarr" and zarr_ok and intact:
                _check_zarr_shard(store, shard, report)
            if intact and (fmt != "zarr" or zarr_ok):
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
    if "webdataset" in store.formats:
        _redecode_wds(store, codec, report, extract_latents)
    if "zarr" not in store.formats:
        return
    for split in store.splits:
        zs = store.zarr_split(split)
        for start, stop in zs.blocks():
            rows = zs.read(start, stop, bitstreams=True)
            for i, key in enumerate(rows["key"]):
                got = extract_latents(
                    codec.model, [rows["y_string"][i]], [rows["z_string"][i]], rows["z_shape"][i]
                )
                h, w = rows["latent_shape"][i]
                sample = {
                    k: rows[k][i][:, :h, :w]
                    for k in ("y_hat", "scales_hat", "means_hat")
                    if k in rows
                }
                _compare(report, f"zarr/{split}:{key}", got, sample, store)


def _redecode_wds(store, codec, report, extract_latents) -> None:
    for split in store.splits:
        for s in store.wds_samples(split):
            got = extract_latents(
                codec.model, [s["y_string"]], [s["z_string"]], s["info"]["z_shape"]
            )
            _compare(report, f"wds/{split}:{s['key']}", got, s, store)


def _compare(report, where, got, sample: dict, store) -> None:
    """The decoder's y_hat (rebuilt from the stored symbols, + means_hat or the medians),
    scales_hat and means_hat against the re-decoded bitstream, bit for bit."""
    from latentcache.store.reader import decoded_y_hat

    layout = "zarr" if where.startswith("zarr/") else "webdataset"
    report.redecoded[layout] = report.redecoded.get(layout, 0) + 1
    if not np.array_equal(got["y_hat"][0].numpy(), decoded_y_hat(sample, store.manifest)):
        report.problems.append(f"{where}: stored y_hat differs from the re-decoded bitstream")
    if store.has_scales:
        expect = store.scales_to_float(_as_stored(got, store.scales_repr))
        if not np.array_equal(expect, sample["scales_hat"]):
            report.problems.append(
                f"{where}: stored scales_hat differs from the re-decoded bitstream"
            )
    if "means_hat" in sample and not np.array_equal(
        got["means_hat"][0].numpy(), sample["means_hat"]
    ):
        report.problems.append(f"{where}: stored means_hat differs from the re-decoded bitstream")


def _as_stored(got, repr_: str) -> np.ndarray:
    if repr_ == "index":
        return got["indexes"][0].numpy().astype(np.uint8)
    if repr_ == "z_hat":
        return got["z_hat"][0].round().numpy().astype(np.int16)
    return got["scales_hat"][0].numpy().astype(np.float16 if repr_ == "float16" else np.float32)

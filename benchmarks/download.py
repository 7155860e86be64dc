"""``latentcache download`` over loopback HTTP against a plain copy of the same bytes.

    python benchmarks/download.py [--mib 256] [--images 2000] [--repeats 2]

Two archives are served by a real HTTP server on 127.0.0.1 (byte ranges, as the publishers'
hosts answer): a ``--mib`` MiB file of random bytes (a stand-in for a large archive) and a
MINC-like ``tar.gz`` of ``--images`` real JPEG crops. Contenders, alternated, best of
``--repeats``, into fresh folders:

- ``download (file)``: fetch into ``.part`` (1 MiB chunks, each flushed), sha256 of the whole
  file, rename, then place it: what a large archive costs besides its unpacking;
- ``fetch into .part``: the fetch alone (``latentcache.download.fetch.fetch``);
- ``sha256 of the file``: the check alone (``file_digest``), reading the file back;
- ``urllib copy``: the same GET written to disk with ``shutil.copyfileobj``, no checks;
- ``download (tar.gz)``: fetch, sha256, member checks and extraction of the JPEG tar;
- ``tarfile extractall``: ``tarfile.extractall(filter="data")`` of the same local tar.

The ratios (download / plain copy) are the result; absolute figures depend on the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dataset_archives import jpeg, make_tar  # noqa: E402
from loopback_http import serve_folder  # noqa: E402

from latentcache.download import DownloadConfig, run_download  # noqa: E402
from latentcache.download.fetch import fetch, file_digest  # noqa: E402
from latentcache.download.spec import Checksum, DownloadSpec, FileSpec  # noqa: E402


def _spec(name: str, payload: bytes, base: str, fmt: str, provides: str) -> DownloadSpec:
    f = FileSpec(
        name, (f"{base}/{name}",), Checksum("sha256", hashlib.sha256(payload).hexdigest(), "bench"),
        fmt, (provides,), max_bytes=8 << 30, max_members=1 << 20,
    )  # fmt: skip
    return DownloadSpec("bench", "bench", (f,))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _download(spec: DownloadSpec, tmp: Path) -> float:
    root = Path(tempfile.mkdtemp(dir=tmp))
    return _timed(lambda: run_download(DownloadConfig("bench", str(root), progress=False), spec))


def _urllib_copy(url: str, tmp: Path) -> float:
    def copy() -> None:
        with urllib.request.urlopen(url) as resp, open(tmp / f"c{time.time_ns()}", "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)

    return _timed(copy)


def _fetch(url: str, tmp: Path) -> float:
    return _timed(lambda: fetch(url, tmp / f"f{time.time_ns()}.part", max_bytes=8 << 30))


def _extract(archive: Path, tmp: Path) -> float:
    def extract() -> None:
        with tarfile.open(archive) as tf:
            tf.extractall(Path(tempfile.mkdtemp(dir=tmp)), filter="data")

    return _timed(extract)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        srv = tmp / "srv"
        srv.mkdir()
        big = os.urandom(args.mib << 20)
        (srv / "big.bin").write_bytes(big)
        tree = {f"minc-2500/images/c/c_{i:06d}.jpg": jpeg(i) for i in range(args.images)}
        tgz = make_tar(tree)
        (srv / "minc-2500.tar.gz").write_bytes(tgz)
        times: dict[str, list[float]] = {}
        with serve_folder(srv) as base:
            file_spec = _spec("big.bin", big, base, "file", "big.bin")
            tar_spec = _spec("minc-2500.tar.gz", tgz, base, "tar", "minc-2500")
            for _ in range(args.repeats):
                for name, fn in (
                    ("download (file)", lambda: _download(file_spec, tmp)),
                    ("fetch into .part", lambda: _fetch(f"{base}/big.bin", tmp)),
                    (
                        "sha256 of the file",
                        lambda: _timed(lambda: file_digest(srv / "big.bin", "sha256")),
                    ),
                    ("urllib copy", lambda: _urllib_copy(f"{base}/big.bin", tmp)),
                    ("download (tar.gz)", lambda: _download(tar_spec, tmp)),
                    ("tarfile extractall", lambda: _extract(srv / "minc-2500.tar.gz", tmp)),
                ):
                    times.setdefault(name, []).append(fn())
        best = {k: min(v) for k, v in times.items()}
        mib_tgz = len(tgz) / (1 << 20)
        print(f"{args.mib} MiB random file; tar.gz of {args.images} JPEGs = {mib_tgz:.1f} MiB")
        for name, t in best.items():
            size = mib_tgz if "tar" in name else args.mib
            print(f"{name:<20} {t:7.3f} s  {size / t:8.1f} MiB/s")
        for a, b in (("download (file)", "urllib copy"), ("fetch into .part", "urllib copy")):
            print(f"ratio {a} / {b}: {best[a] / best[b]:.2f}")
        ratio = best["download (tar.gz)"] / best["tarfile extractall"]
        print(f"ratio download (tar.gz) / tarfile extractall: {ratio:.2f}")


if __name__ == "__main__":
    main()

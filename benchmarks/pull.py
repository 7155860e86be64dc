"""Pull throughput over loopback HTTP against plain recursive copies of the same store.

    python benchmarks/pull.py [--images 64] [--size 256] [--shard-size 16] [--repeats 3]

One store (both layouts, demo codec, crops of scikit-image's CC0 photos) is served by a real
HTTP server on 127.0.0.1 (byte ranges, as object stores answer). Contenders, alternated, best
of ``--repeats`` each, into fresh folders:

- ``latentcache pull``: every file the manifest lists, sha256 and size checked, manifest last;
- fsspec's ``HTTPFileSystem``: ``find`` (walking directory listings) then one concurrent
  ``get`` of every file, no checks;
- fsspec's ``get`` of the very files pull copies (the manifest's list, no walk, no checks):
  the transfer floor, so the difference to pull is the cost of its checks;
- ``wget -r`` (when installed): a recursive copy, one file at a time.

The ratio of pull's MB/s to each plain copy's is the result; absolute figures depend on the
machine (shared and busy here).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import bench_codec  # noqa: E402
from encode import make_images  # noqa: E402
from loopback_http import serve_folder  # noqa: E402


def make_store(root: Path, images: int, size: int, shard_size: int) -> Path:
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    codec, what = bench_codec("demo")
    data = make_images(root / "images", images, size)
    out = root / "serve" / "store"
    config = EncodeConfig(
        dataset="imagefolder", data_root=str(data), out=str(out), workers=0, shard_size=shard_size
    )
    run_encode(config, codec)
    shutil.rmtree(out / ".latentcache")  # the encoder's own state, not part of a shared store
    print(f"store: {images} x {size}² crops, {what}, shard size {shard_size}")
    return out


def payload(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file() and ".latentcache" not in p.parts]
    return len(files), sum(p.stat().st_size for p in files)


def run_pull(url: str, dest: Path) -> None:
    from latentcache.store.transfer import TransferConfig
    from latentcache.store.transfer import run_pull as pull

    pull(TransferConfig(url, str(dest), progress=False))


def run_fsspec(url: str, dest: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("http", skip_instance_cache=True)
    found = fs.find(url + "/", detail=True)  # walks the server's directory listings
    files = [n for n, d in found.items() if d["type"] == "file" and not n.endswith("/")]
    fs.get(files, [str(dest / n[len(url) + 1 :]) for n in files])  # concurrent (asyncio)


def run_fsspec_listed(url: str, dest: Path) -> None:
    import fsspec

    from latentcache.store.manifest import read_manifest
    from latentcache.store.transfer import plan_files

    fs = fsspec.filesystem("http", skip_instance_cache=True)
    m = read_manifest(url)
    rels = [f.path for f in plan_files(m, list(m["splits"]))] + ["manifest.json"]
    fs.get([f"{url}/{r}" for r in rels], [str(dest / r) for r in rels])


def run_wget(url: str, dest: Path) -> None:
    dest.mkdir(parents=True)
    subprocess.run(
        [
            "wget",
            "-q",
            "-r",
            "-l",
            "inf",
            "-np",
            "-nH",
            "--cut-dirs=1",
            "-R",
            "index.html*",
            "-P",
            str(dest),
            url + "/",
        ],
        check=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shard-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    contenders = {
        "latentcache pull": run_pull,
        "fsspec find + get": run_fsspec,
        "fsspec get, known list": run_fsspec_listed,
    }
    if shutil.which("wget"):
        contenders["wget -r"] = run_wget
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = make_store(tmp, args.images, args.size, args.shard_size)
        files, nbytes = payload(store)
        best = {name: float("inf") for name in contenders}
        with serve_folder(store.parent) as base:
            for r in range(args.repeats):
                for name, fn in contenders.items():
                    dest = tmp / f"copy-{r}-{len(name)}"
                    t0 = time.perf_counter()
                    fn(f"{base}/store", dest)
                    best[name] = min(best[name], time.perf_counter() - t0)
                    got = payload(dest)
                    assert got[1] >= nbytes * 0.99, (name, got, nbytes)  # a whole copy
                    shutil.rmtree(dest)
    print(f"{files} files, {nbytes / 2**20:.2f} MiB; best of {args.repeats}")
    print(f"{'contender':<28} {'seconds':>8} {'MiB/s':>8} {'pull / it':>10}")
    for name, secs in best.items():
        ratio = (nbytes / best["latentcache pull"]) / (nbytes / secs)
        print(f"{name:<28} {secs:>8.3f} {nbytes / 2**20 / secs:>8.2f} {ratio:>9.2f}x")


if __name__ == "__main__":
    main()

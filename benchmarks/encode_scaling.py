"""Encode scale-out: images/s with 1 and 2 Dask workers, and the Dask path's per-task overhead
against the in-process path, side by side in one run on the same images.

    python benchmarks/encode_scaling.py [--images 48] [--size 256] [--shard-size 8] [--codec demo|random] [--repeats 2]

Contenders, each warmed up by one untimed encode (workers import their modules, build the
entropy coder's tables), then alternated, best of ``--repeats`` each:

- in-process (``--workers 0``): shard k written by one thread while shard k+1 encodes;
- Dask, 1 worker and Dask, 2 workers: LocalClusters started once, before the timings, with the
  resources ``encode`` (one shard encoding) and ``write`` (one shard being written) per worker,
  as ``latentcache encode --workers N`` starts them.

Timed: ``EncodeResult.timings["encode_s"]``, from the first task submitted to the last shard
committed (the same span for every contender); the cluster start-up is printed apart. Every
process runs the codec's float transforms on one torch thread (pinned, see README "Scale-out").
Goals: 2 workers >= 1.7x the images/s of 1 worker on 2 cores; the Dask path's time per task
<= 5 % over the in-process path's. On a shared machine the second core may not be free: the
run also measures the machine's own ceiling, two pure-Python loops in 2 processes against the
same two in 1 process, before and after the encodes, and prints it beside the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from _common import bench_codec
from encode import make_images

warnings.filterwarnings("ignore")


def encode_once(codec, root: Path, out: Path, shard_size: int, **where) -> tuple[float, int]:
    """(seconds of the tasks, number of tasks) of one fresh encode."""
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    shutil.rmtree(out, ignore_errors=True)
    config = EncodeConfig(
        dataset="imagefolder", data_root=str(root), out=str(out), shard_size=shard_size, **where
    )
    result = run_encode(config, codec)
    return result.timings["encode_s"], result.encoded_now


def _spin(n: int) -> int:
    x = 0
    for i in range(n):
        x += i
    return x


def cpu_ceiling(n: int = 20_000_000) -> float:
    """The speed-up two processes get over one on two equal pure-Python jobs, right now."""
    import multiprocessing as mp

    times = []
    for procs in (1, 2):
        with mp.get_context("spawn").Pool(procs) as pool:
            pool.map(_spin, [1000] * procs)  # started and warm
            t0 = time.perf_counter()
            pool.map(_spin, [n, n], chunksize=1)
            times.append(time.perf_counter() - t0)
    return times[0] / times[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("--codec", choices=["demo", "random"], default="demo")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    import torch

    from latentcache.pipeline.workers import local_cluster

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="lc-scaling-"))
    clusters = {}
    try:
        root = make_images(tmp / "images", args.images, args.size)
        codec, what = bench_codec(args.codec)
        load0, ceiling0 = os.getloadavg(), cpu_ceiling()
        t0 = time.perf_counter()
        clusters = {n: local_cluster(n, dashboard=None) for n in (1, 2)}
        startup = time.perf_counter() - t0
        contenders = {
            "in-process (--workers 0)": dict(workers=0),
            **{
                f"Dask, {n} worker{'s' * (n > 1)}": dict(scheduler=c.scheduler_address)
                for n, c in clusters.items()
            },
        }
        for where in contenders.values():  # warm-up, untimed
            encode_once(codec, root, tmp / "store", args.shard_size, **where)
        best: dict[str, float] = {}
        tasks = 0
        for _ in range(args.repeats):  # alternate, to share the machine's noise
            for name, where in contenders.items():
                seconds, tasks = encode_once(codec, root, tmp / "store", args.shard_size, **where)
                best[name] = min(best.get(name, float("inf")), seconds)
        ceiling = (ceiling0 + cpu_ceiling()) / 2
        report(args, what, best, tasks, startup, load0, os.getloadavg(), ceiling)
    finally:
        for c in clusters.values():
            c.close()
        shutil.rmtree(tmp, ignore_errors=True)


def report(args, what, best, tasks, startup, load0, load1, ceiling) -> None:
    names = list(best)
    local, one, two = (best[n] for n in names)
    print(
        f"{args.images} images {args.size}x{args.size}, {what}, {tasks} tasks of {args.shard_size} "
        f"images, {os.cpu_count()} cores, best of {args.repeats}; load average "
        f"{load0[0]:.1f} before, {load1[0]:.1f} after (a busy machine inflates every figure)\n"
    )
    print("| contender | seconds (tasks) | images/s | per task, s |\n|---|---|---|---|")
    for n in names:
        print(f"| {n} | {best[n]:.2f} | {args.images / best[n]:.2f} | {best[n] / tasks:.3f} |")
    print(f"\nLocalClusters (1 + 2 workers) started in {startup:.1f} s (not in the timings)\n")
    print("| measure | result | goal |\n|---|---|---|")
    print(f"| images/s, 2 workers / 1 worker | **{one / two:.2f}x** | >= 1.7x |")
    print(
        f"| the machine's ceiling: 2 processes / 1 (pure Python, same run) | {ceiling:.2f}x | 2x |"
    )
    overhead = (one - local) / tasks
    print(
        f"| Dask per-task overhead vs in-process | **{100 * (one / local - 1):+.1f} %** "
        f"({1000 * overhead:+.0f} ms per task) | <= 5 % |"
    )
    per_image = local / args.images
    print(
        f"| the same per-task cost on a default shard (256 images) | "
        f"{100 * overhead / (256 * per_image):+.2f} % | <= 5 % |"
    )


if __name__ == "__main__":
    main()

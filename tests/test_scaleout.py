"""Scale-out on Dask: run-token fencing, the same bytes for any number of workers, Ctrl-C and
kill -9 of a Dask driver, the pipelined (GPU) encoder.

The cluster tests use a real ``LocalCluster`` of 2 worker processes, shared by the module.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from conftest import write_texture_folder
from distributed import Client

from latentcache.cli.main import cli
from latentcache.config import EncodeConfig
from latentcache.datasets import build_index
from latentcache.errors import StaleRunError
from latentcache.pipeline import encode as enc
from latentcache.pipeline.shard import (
    ShardSettings,
    commit_shard,
    compute_shard,
    encode_samples,
    encode_shard,
    pinned_threads,
)
from latentcache.store import open_store
from latentcache.store.writer import (
    StoreWriter,
    current_run_token,
    fenced_commit,
    remove_temporary_files,
)


@pytest.fixture(scope="module")
def cluster():
    """A real LocalCluster of 2 worker processes, each one encode and one write slot."""
    from latentcache.pipeline.workers import local_cluster

    with local_cluster(2, dashboard="127.0.0.1:0") as c:
        yield c


def _config(root: Path, out: Path, **kw) -> EncodeConfig:
    return EncodeConfig(
        dataset="imagefolder",
        data_root=str(root),
        out=str(out),
        shard_size=4,
        dashboard="127.0.0.1:0",
        **kw,
    )


def _file_digests(store: Path) -> dict[str, str]:
    return {
        f.relative_to(store).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(store.rglob("*"))
        if f.is_file() and f.name not in ("lock", "fence")
    }


def test_a_stale_run_token_cannot_commit(tmp_path, texture_root, tiny_codec, cluster):
    out = tmp_path / "store"
    config = _config(texture_root, out, scheduler=cluster.scheduler_address)
    index = build_index("imagefolder", str(texture_root))
    tasks = enc.plan_shards(index, config.shard_size)
    latent_hw, image_hw = enc._planned_sizes(index)
    with StoreWriter(out, enc._plan_record(config, index, tiny_codec, latent_hw)) as run_a:
        enc._create_arrays(out, index, config, tiny_codec, latent_hw, image_hw)
        stale = enc._settings(config, index, latent_hw, image_hw, run_a.run_token)
        commit_shard(tasks[0], compute_shard(tasks[0], tiny_codec, stale), stale)
    # run A's driver is gone; run B takes the store over and finishes it on the cluster
    result = enc.run_encode(config, tiny_codec)
    assert result.resumed and result.encoded_now == len(tasks) - 1
    assert current_run_token(out) not in (None, run_a.run_token)
    before = _file_digests(out)

    # run A's tasks live on (a worker that outlived its driver, a retry): every one is refused
    with Client(cluster) as client:
        futures = [client.submit(encode_shard, t, tiny_codec, stale, pure=False) for t in tasks]
        for fut in futures:
            with pytest.raises(StaleRunError, match="now belongs to run"):
                fut.result()
    assert _file_digests(out) == before  # no shard, record or temporary file was touched
    assert open_store(out).manifest["totals"]["stored"] == 18


def test_taking_a_store_over_waits_for_a_commit_in_flight(tmp_path):
    out = tmp_path / "store"
    with StoreWriter(out, {"plan": 1}) as run_a:
        pass
    taken = threading.Event()
    run_b = StoreWriter(out, {"plan": 1})

    def take_over():
        run_b.__enter__()
        taken.set()

    with fenced_commit(out, run_a.run_token):  # a worker of run A is writing its shard
        thread = threading.Thread(target=take_over)
        thread.start()
        assert not taken.wait(0.5)  # run B waits for that commit to finish whole
    assert taken.wait(60)
    thread.join()
    try:
        assert current_run_token(out) == run_b.run_token
        with pytest.raises(StaleRunError), fenced_commit(out, run_a.run_token):
            pytest.fail("a stale commit got past the fence")
        with fenced_commit(out, run_b.run_token):
            pass
    finally:
        run_b.__exit__(None, None, None)


def _arrays(store: Path) -> dict[str, np.ndarray]:
    root = zarr.open_group(store / "zarr", mode="r")
    return {
        f"{split}/{name}": arr[:] for split, group in root.groups() for name, arr in group.arrays()
    }


def test_one_and_two_workers_write_the_same_bytes(tmp_path, texture_root, tiny_codec, cluster):
    outs = {
        "1 worker": _config(texture_root, tmp_path / "w1", workers=1),
        "2 workers": _config(texture_root, tmp_path / "w2", scheduler=cluster.scheduler_address),
        "in-process": _config(texture_root, tmp_path / "w0", workers=0),
    }
    for config in outs.values():
        with pinned_threads(2):  # this process's own torch threads must not change the floats
            enc.run_encode(config, tiny_codec)
    ref = _arrays(tmp_path / "w1")
    assert ref["train/key"].size and (ref["train/key"] != "").all()
    for name in ("2 workers", "in-process"):
        other = _arrays(Path(outs[name].out))
        assert other.keys() == ref.keys()
        for key, a in ref.items():
            assert np.array_equal(a, other[key]), f"{name}: {key}"
        tars = [sorted((Path(c.out) / "wds").glob("*.tar")) for c in (outs["1 worker"], outs[name])]
        assert [t.read_bytes() for t in tars[0]] == [t.read_bytes() for t in tars[1]]
    rec = _commit_records(tmp_path / "w2")[0]
    assert rec["encoder"]["device"] == "cpu" and rec["encoder"]["torch_threads"] == 1


def _commit_records(store: Path) -> list[dict]:
    import json

    return [json.loads(f.read_text()) for f in sorted((store / ".latentcache/commits").glob("*"))]


def test_dashboard_link_is_printed_and_served(tmp_path, texture_root, tiny_checkpoint, cluster):
    res = CliRunner().invoke(
        cli,
        [
            *("encode", "-d", "imagefolder", "--data-root", str(texture_root)),
            *("--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "s")),
            *("--scheduler", cluster.scheduler_address, "--shard-size", "9"),
        ],
    )
    assert res.exit_code == 0, res.output
    link = res.output.split("Dask dashboard: ")[1].split()[0]
    with urllib.request.urlopen(link, timeout=30) as resp:
        assert resp.status == 200  # a live dashboard (bokeh is installed), over loopback


def test_pipelined_coder_gives_the_same_latents(texture_root, tiny_codec, one_torch_thread):
    index = build_index("imagefolder", str(texture_root))
    samples = index.samples[:5]
    base = dict(
        store_path="unused",
        data_root=str(index.root),
        formats=("webdataset",),
        scales_repr="index",
        max_pixels=10**8,
        batch_size=2,
        device="cpu",
        latent_hw={},
    )
    runs = [
        list(
            encode_samples(
                tiny_codec.model, samples, index.root, ShardSettings(**base, pipelined=p)
            )
        )
        for p in (False, True)
    ]
    for (a, _), (b, _) in zip(*runs, strict=True):
        assert (a.key, a.y_string, a.z_string) == (b.key, b.y_string, b.z_string)
        assert np.array_equal(a.y_hat, b.y_hat) and np.array_equal(a.scales, b.scales)


@pytest.mark.gpu
def test_cuda_encoder_pipeline_writes_a_store_that_decodes_on_the_cpu(
    tmp_path, texture_root, tiny_codec
):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from latentcache.store.verify import verify_store

    out = tmp_path / "gpu"
    enc.run_encode(_config(texture_root, out, workers=1, device="cuda"), tiny_codec)
    report = verify_store(open_store(out), redecode=True, codec=tiny_codec)
    assert report.ok, report.problems
    rec = _commit_records(out)[0]["encoder"]
    assert rec["device"] == "cuda" and rec["device_name"]


# --- a Dask driver interrupted (Ctrl-C) or killed (kill -9): slow, real subprocesses ---------


def _encode_cmd(root: Path, out: Path, checkpoint: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "latentcache", "encode", "-d", "imagefolder"),
        *("--data-root", str(root), "--checkpoint", str(checkpoint), "--out", str(out)),
        *("--shard-size", "2", "--workers", "2", "--dashboard", "127.0.0.1:0"),
    ]


def _start_and_wait_for_commits(cmd, out: Path, n: int):
    import psutil

    proc = subprocess.Popen(  # its own process group, as a shell gives a command it runs
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    commits = out / ".latentcache" / "commits"
    deadline = time.monotonic() + 300
    while not (commits.is_dir() and len(list(commits.glob("*.json"))) >= n):
        assert proc.poll() is None, "encoder ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return proc, psutil.Process(proc.pid).children(recursive=True)


def _temporary_files(out: Path) -> list[Path]:
    return [f for f in out.rglob("*") if f.name.endswith((".tmp", ".partial"))]


def _no_orphans(children) -> None:
    import psutil

    _, alive = psutil.wait_procs(children, timeout=30)
    for p in alive:
        p.kill()  # do not leave them to the next test; the assertion reports them
    assert not alive, f"orphan worker processes: {alive}"


def _resume_to_a_complete_store(cmd, out: Path) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stdout
    assert not _temporary_files(out)
    store = open_store(out)
    keys = [s["key"] for s in store.zarr_split("train")]
    assert len(keys) == len(set(keys)) == store.manifest["totals"]["stored"] == 24
    assert CliRunner().invoke(cli, ["verify", str(out)]).exit_code == 0


@pytest.mark.slow
def test_ctrl_c_stops_a_dask_run_cleanly_and_it_resumes(tmp_path, tiny_checkpoint):
    root = write_texture_folder(tmp_path / "data", per_class=8, size=160)
    out = tmp_path / "store"
    cmd = _encode_cmd(root, out, tiny_checkpoint)
    proc, children = _start_and_wait_for_commits(cmd, out, 1)
    assert len(children) >= 2  # the worker processes
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the driver and its workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "re-run the same command to resume" in err
    assert "Traceback" not in err, err
    _no_orphans(children)
    assert not (out / "manifest.json").exists()
    _resume_to_a_complete_store(cmd, out)


@pytest.mark.slow
def test_dask_driver_killed_mid_run_resumes(tmp_path, tiny_checkpoint):
    root = write_texture_folder(tmp_path / "data", per_class=8, size=160)
    out = tmp_path / "store"
    cmd = _encode_cmd(root, out, tiny_checkpoint)
    proc, children = _start_and_wait_for_commits(cmd, out, 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    _no_orphans(children)  # LocalCluster workers exit with their driver
    commits = out / ".latentcache" / "commits"
    before = {p.name: p.stat().st_mtime_ns for p in commits.glob("*.json")}
    assert 2 <= len(before) < 12
    _resume_to_a_complete_store(cmd, out)
    for name, mtime in before.items():  # finished shards were not redone
        assert (commits / name).stat().st_mtime_ns == mtime


def test_resume_removes_temporary_files_of_an_interrupted_run(tmp_path):
    out = tmp_path / "store"
    with StoreWriter(out, {"plan": 1}):
        pass
    left = [
        out / "wds" / ".train-000000.tar.4242.tmp",
        out / ".latentcache" / "commits" / ".train-000000.json.4242.tmp",
        out / "zarr" / "train" / "y_hat" / "c" / "0" / f"0.{'ab' * 16}.partial",
    ]
    keep = out / "wds" / "train-000000.tar"
    for f in [*left, keep]:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    with StoreWriter(out, {"plan": 1}) as again:
        assert again.resumed
    assert not any(f.exists() for f in left) and keep.exists()
    assert remove_temporary_files(out) == 0


def test_cluster_workers_run_with_glibc_malloc_defaults_and_one_encode_slot(cluster):
    with Client(cluster) as client:
        env = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        assert set(env.values()) == {None}  # it made the codec's convolutions 1.45x slower
        workers = client.scheduler_info()["workers"].values()
        assert [w["resources"] for w in workers] == [{"encode": 1, "write": 1}] * 2

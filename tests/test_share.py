"""Sharing stores: reading from URLs (real loopback HTTP, memory://), pull and push, and
hostile shards refused wherever a store is read (verify, the training read path, pull)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from loopback_http import serve_folder
from tar_edit import read_members, reseal, write_tar

from latentcache.cli.main import cli
from latentcache.errors import ConfigError, StoreCorruptError, StoreNotFoundError
from latentcache.store import open_store
from latentcache.store.transfer import TransferConfig, run_pull, run_push
from latentcache.store.verify import verify_store

SHARD = "wds/train-000000.tar"


@pytest.fixture(scope="module")
def served(texture_store):
    """The texture store served over real HTTP on 127.0.0.1."""
    with serve_folder(texture_store.path.parent) as base:
        yield f"{base}/{texture_store.path.name}"


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".latentcache" not in p.parts
    }


def _memory_url() -> str:
    return f"memory://share-{uuid.uuid4().hex[:8]}"


def test_open_store_reads_the_same_samples_over_http(texture_store, served) -> None:
    remote = open_store(served)
    assert remote.manifest == texture_store.manifest
    local, there = texture_store.zarr_split("train"), remote.zarr_split("train")
    for a, b in zip(local, there, strict=True):
        assert a["key"] == b["key"] and np.array_equal(a["y_hat"], b["y_hat"])
    keys = [s["key"] for s in remote.wds_samples("train")]
    assert keys == [s["key"] for s in texture_store.wds_samples("train")] and keys
    report = verify_store(remote)
    assert report.ok, report.problems
    with pytest.raises(ConfigError, match="not a local folder"):
        remote.path  # noqa: B018


@pytest.mark.parametrize("fmt", ["zarr", "webdataset"])
def test_train_and_eval_read_a_store_straight_from_a_url(
    served, tmp_path, fmt, one_torch_thread
) -> None:
    small = ["--epochs", "1", "--batch-size", "4", "--model-opt", "base_width=4"]
    out = tmp_path / "run"
    args = ["train", served, "--format", fmt, "--out", str(out), *small, "--resize", "8"]
    result = CliRunner().invoke(cli, [*args, "--crop", "6"])
    assert result.exit_code == 0, result.output
    assert (out / "last.pt").is_file() and f"{out}: 1 epochs" in result.output
    scored = CliRunner().invoke(cli, ["eval", str(out), served, "--format", fmt, "--json"])
    assert scored.exit_code == 0, scored.output
    assert 0.0 <= json.loads(scored.stdout)["top1"] <= 1.0


def test_a_memory_store_trains_in_process_and_refuses_worker_processes(
    texture_store, tmp_path, one_torch_thread
) -> None:
    url = _memory_url()
    run_push(TransferConfig(str(texture_store.path), url, progress=False))
    out = tmp_path / "run"
    small = ["--epochs", "1", "--batch-size", "4", "--model-opt", "base_width=4", "--resize", "8"]
    args = ["train", url, "--out", str(out), *small, "--crop", "6"]
    refused = CliRunner().invoke(cli, [*args, "--workers", "2"])
    line = (
        f"Error: {url}: a memory:// store lives in this process's memory, which DataLoader "
        f"workers (new processes) do not share; use --workers 0, or `latentcache pull {url} "
        "DIR` and read the folder"
    )
    assert refused.exit_code == 1 and refused.output.strip() == line, refused.output
    assert not out.exists()
    trained = CliRunner().invoke(cli, [*args, "--workers", "0"])
    assert trained.exit_code == 0 and (out / "last.pt").is_file(), trained.output
    evaluated = CliRunner().invoke(cli, ["eval", str(out), url, "--workers", "2"])
    assert evaluated.exit_code == 1 and evaluated.output.strip() == line, evaluated.output


def test_pull_from_loopback_http_is_a_verified_byte_identical_copy(
    texture_store, served, tmp_path
) -> None:
    dest = tmp_path / "copy"
    result = run_pull(TransferConfig(served, str(dest), progress=False))
    assert result.copied == result.files and result.skipped == 0
    source = _files(texture_store.path)
    copied = _files(dest)
    assert set(copied) <= set(source) and all(copied[k] == source[k] for k in copied)
    assert "manifest.json" in copied and any(k.endswith("zarr.json") for k in copied)
    assert verify_store(open_store(dest)).ok
    again = run_pull(TransferConfig(served, str(dest), progress=False))
    assert again.copied == 0 and again.skipped == again.files  # nothing to do


def test_push_to_memory_and_pull_back_through_the_cli(texture_store, tmp_path) -> None:
    url = _memory_url()
    pushed = CliRunner().invoke(cli, ["push", str(texture_store.path), url])
    assert pushed.exit_code == 0, pushed.output
    assert f"to {url}" in pushed.output
    assert verify_store(open_store(url)).ok
    card = CliRunner().invoke(cli, ["inspect", url])
    assert card.exit_code == 0 and "imagefolder" in card.output
    pulled = CliRunner().invoke(cli, ["pull", url, str(tmp_path / "back")])
    assert pulled.exit_code == 0, pulled.output
    ok = CliRunner().invoke(cli, ["verify", str(tmp_path / "back")])
    assert ok.exit_code == 0 and ok.output.startswith("OK")


def test_pull_one_split_reconciles_and_records_its_source(texture_store, served, tmp_path) -> None:
    dest = tmp_path / "test-only"
    result = CliRunner().invoke(cli, ["pull", served, str(dest), "--split", "test"])
    assert result.exit_code == 0, result.output
    m = json.loads((dest / "manifest.json").read_text())
    assert list(m["splits"]) == ["test"] and {sh["split"] for sh in m["shards"]} == {"test"}
    t = m["totals"]
    assert t["indexed"] == t["stored"] + t["failed"] == m["splits"]["test"]["indexed"]
    source_sha = hashlib.sha256((texture_store.path / "manifest.json").read_bytes()).hexdigest()
    assert m["copied_from"] == {"url": served, "manifest_sha256": source_sha, "splits": ["test"]}
    assert not list(dest.glob("wds/train-*")) and not (dest / "zarr" / "train").exists()
    store = open_store(dest)
    assert verify_store(store).ok and store.splits == ["test"]
    assert len(list(store.wds_samples("test"))) == m["splits"]["test"]["stored"]
    bad = CliRunner().invoke(cli, ["pull", served, str(tmp_path / "x"), "--split", "valid"])
    assert bad.exit_code != 0 and "unknown split(s) ['valid']" in bad.output


def _copy_store(texture_store, tmp_path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(texture_store.path, dst, ignore=shutil.ignore_patterns(".latentcache"))
    return dst


def test_an_interrupted_pull_resumes_and_ends_verified(texture_store, tmp_path) -> None:
    src, dest = _copy_store(texture_store, tmp_path), tmp_path / "dest"
    victim = src / "wds/train-000001.tar"
    whole = victim.read_bytes()
    victim.write_bytes(whole[: len(whole) // 2])  # the source breaks mid-copy
    with pytest.raises(StoreCorruptError, match="wds/train-000001.tar: .*truncated"):
        run_pull(TransferConfig(str(src), str(dest), progress=False))
    with pytest.raises(StoreNotFoundError, match="not a finished latentcache store"):
        open_store(dest)  # no manifest: a half-copied store never looks complete
    assert not list(dest.rglob("*.part"))
    (dest / "wds/train-000000.tar").write_bytes(b"half a file from a killed copy")
    victim.write_bytes(whole)
    result = run_pull(TransferConfig(str(src), str(dest), progress=False))
    assert 0 < result.skipped < result.files and result.copied >= 2
    report = verify_store(open_store(dest))
    assert report.ok, report.problems
    assert (dest / "wds/train-000000.tar").read_bytes() == (
        src / "wds/train-000000.tar"
    ).read_bytes()


def _flip_a_bitstream_byte(b: bytes) -> bytes:
    """Flip a byte inside a y_string member: the tar still parses, only the sha256 tells."""
    with tarfile.open(fileobj=io.BytesIO(b)) as tf:
        at = next(m.offset_data for m in tf if m.name.endswith(".y_string")) + 5
    return b[:at] + bytes([b[at] ^ 1]) + b[at + 1 :]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_flip_a_bitstream_byte, "sha256 differs from the manifest"),
        (lambda b: b[: len(b) - 1024], "bytes, manifest says"),
        (None, "missing"),
    ],
    ids=["flipped-byte", "truncated", "missing"],
)
def test_damaged_tar_refused_by_pull_verify_and_the_training_read(
    texture_store, tmp_path, damage, reason
) -> None:
    src = _copy_store(texture_store, tmp_path)
    tar = src / SHARD
    tar.unlink() if damage is None else tar.write_bytes(damage(tar.read_bytes()))
    with pytest.raises(StoreCorruptError, match=f"{SHARD}: .*{reason}"):
        run_pull(TransferConfig(str(src), str(tmp_path / "dest"), progress=False))
    report = verify_store(open_store(src))
    assert any(p.startswith(SHARD) and reason in p for p in report.problems), report.problems
    with pytest.raises((StoreCorruptError, StoreNotFoundError), match=f"{SHARD}: .*{reason}"):
        list(open_store(src).wds_samples("train"))


# --- hostile tars: consistent with their manifest (sha256 and size updated), so only the
# member and array checks can refuse them -------------------------------------------------


def _npy_gz(a: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=allow_pickle)
    return gzip.compress(buf.getvalue(), mtime=0)


def _replace_y_hat(payload: bytes, suffix: str = "npy.gz"):
    """Put ``payload`` in place of the first sample's y_hat member, named ``y_hat.<suffix>``."""

    def edit(members):
        out, done = [], False
        for info, data in members:
            if not done and ".y_hat.npy" in info.name:
                info.name = info.name[: info.name.index(".y_hat.npy")] + f".y_hat.{suffix}"
                data, done = payload, True
            out.append((info, data))
        assert done, "no y_hat member to replace"
        return out

    return edit


def _add_member(info: tarfile.TarInfo):
    return lambda members: [members[0], (info, b"x" if info.isreg() else b""), *members[1:]]


def _symlink() -> tarfile.TarInfo:
    info = tarfile.TarInfo("brick/brick_0.y_string")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info


def _bomb_npy() -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<i2", "fortran_order": False, "shape": (24, 8, 8)}
    )
    return header.getvalue() + bytes(64 << 20)  # a valid header, then 64 MiB of zeros


def _bomb() -> bytes:
    return gzip.compress(_bomb_npy(), mtime=0)


def _zstd_bomb() -> bytes:
    import numcodecs

    return bytes(numcodecs.Zstd(level=1).encode(_bomb_npy()))


def _npy_zst(a: np.ndarray) -> bytes:
    import numcodecs

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return bytes(numcodecs.Zstd(level=1).encode(buf.getvalue()))


HOSTILE = {
    "traversal": (_add_member(tarfile.TarInfo("../../evil.y_string")), "path traversal"),
    "symlink": (lambda m: [m[0], (_symlink(), b""), *m[1:]], "a link to '/etc/passwd'"),
    "pickled-npy": (
        _replace_y_hat(_npy_gz(np.array([{"a": 1}], dtype=object), allow_pickle=True)),
        "object dtype: a pickled .npy",
    ),
    "gzip-bomb": (_replace_y_hat(_bomb()), "gzip bomb"),
    "zstd-bomb": (_replace_y_hat(_zstd_bomb(), "npy.zst"), "zstd bomb"),
    "zstd-wrong-dtype": (
        _replace_y_hat(_npy_zst(np.zeros((24, 8, 8), np.float32)), "npy.zst"),
        "dtype float32, manifest says int16",
    ),
    "oversized-array": (
        _replace_y_hat(_npy_gz(np.zeros((24, 512, 512), np.int16))),
        "oversized array",
    ),
    "wrong-dtype": (
        _replace_y_hat(_npy_gz(np.zeros((24, 8, 8), np.float64))),
        "dtype float64, manifest says int16",
    ),
}


@pytest.fixture
def hostile_store(texture_store, tmp_path, request) -> tuple[Path, str]:
    edit, reason = HOSTILE[request.param]
    src = _copy_store(texture_store, tmp_path)
    tar = src / SHARD
    write_tar(tar, edit(read_members(tar)))
    reseal(src, SHARD)
    return src, reason


@pytest.mark.parametrize("hostile_store", sorted(HOSTILE), indirect=True)
def test_hostile_tar_refused_by_verify_and_train(hostile_store, tmp_path, one_torch_thread):
    src, reason = hostile_store
    result = CliRunner().invoke(cli, ["verify", str(src)])
    assert result.exit_code == 1
    damaged = [line for line in result.output.splitlines() if line.startswith("DAMAGED")]
    assert len(damaged) == 1 and damaged[0].startswith(f"DAMAGED {SHARD}: ")
    assert reason in damaged[0], damaged
    with pytest.raises(StoreCorruptError, match=f"^{SHARD}: .*") as caught:
        list(open_store(src).wds_samples("train"))  # what train's WebDataset stream reads
    assert reason in str(caught.value) and "\n" not in str(caught.value)
    args = ["train", str(src), "--format", "webdataset", "--out", str(tmp_path / "run")]
    trained = CliRunner().invoke(cli, [*args, "--epochs", "1", "--batch-size", "4"])
    assert trained.exit_code == 1 and "Traceback" not in trained.output
    assert f"{SHARD}: " in trained.output and reason in trained.output, trained.output
    assert not (tmp_path / "evil.y_string").exists() and not (src.parent / "evil.y_string").exists()


@pytest.mark.parametrize("hostile_store", ["zstd-wrong-dtype"], indirect=True)
def test_hostile_tar_refused_in_one_line_by_train_with_worker_processes(
    hostile_store, tmp_path
) -> None:
    src, reason = hostile_store
    args = ["train", str(src), "--format", "webdataset", "--out", str(tmp_path / "run")]
    trained = CliRunner().invoke(
        cli, [*args, "--epochs", "1", "--batch-size", "4", "--workers", "2"]
    )
    assert trained.exit_code == 1 and "Traceback" not in trained.output, trained.output
    (line,) = [x for x in trained.output.splitlines() if x.startswith("Error: ")]
    assert line.startswith(f"Error: {SHARD}: ") and reason in line, trained.output


def _rewrite_manifest(store: Path, change) -> None:
    m = json.loads((store / "manifest.json").read_text())
    change(m)
    (store / "manifest.json").write_text(json.dumps(m))


def test_newer_schema_version_is_named_not_misread(texture_store, tmp_path) -> None:
    src = _copy_store(texture_store, tmp_path)
    _rewrite_manifest(src, lambda m: m.update(version=3, shards="a future layout"))
    line = "manifest schema version 3 is newer than this latentcache reads (up to 2)"
    for command in (["verify", str(src)], ["inspect", str(src)], ["train", str(src)]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code != 0 and line in result.output, (command, result.output)
        assert "Traceback" not in result.output
    with pytest.raises(StoreCorruptError, match=re.escape(line)):
        run_pull(TransferConfig(str(src), str(tmp_path / "dest"), progress=False))


def test_manifest_outside_the_schema_is_refused_before_anything_is_written(
    texture_store, tmp_path
) -> None:
    src = _copy_store(texture_store, tmp_path)
    _rewrite_manifest(src, lambda m: m["shards"][0]["files"]["webdataset"][0].update(path="../x"))
    dest = tmp_path / "out" / "dest"
    with pytest.raises(StoreCorruptError, match="does not match manifest schema v2 at shards/0"):
        run_pull(TransferConfig(str(src), str(dest), progress=False))
    assert not (tmp_path / "out").exists()
    _rewrite_manifest(src, lambda m: m["codec"].update(M="24"))
    with pytest.raises(StoreCorruptError, match="at codec/M: must be integer"):
        open_store(src)


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda meta: meta.update(data_type="int32"), "dtype int32, manifest says int16"),
        (lambda meta: meta["shape"].__setitem__(2, 4096), "oversized array"),
    ],
    ids=["wrong-dtype", "oversized-array"],
)
def test_zarr_arrays_are_checked_against_the_manifest(texture_store, tmp_path, edit, reason):
    src = _copy_store(texture_store, tmp_path)
    meta_path = src / "zarr/train/y_hat/zarr.json"
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreCorruptError, match=f"zarr/train/y_hat: .*{reason}"):
        open_store(src).zarr_split("train")


def test_encode_refuses_a_url_and_names_push(texture_root) -> None:
    result = CliRunner().invoke(
        cli, ["encode", "-d", "imagefolder", "--data-root", str(texture_root), "--out", "s3://b/x"]
    )
    assert result.exit_code != 0 and "latentcache push" in result.output


def test_missing_backend_names_its_extra(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_s3fs(name, *args, **kwargs):
        if name == "s3fs":
            raise ImportError("No module named 's3fs'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_s3fs)
    with pytest.raises(ConfigError, match=r"pip install 'latentcache\[s3\]'"):
        open_store("s3://team-a/latents/minc-q4")


def test_push_to_http_is_refused(texture_store, served) -> None:
    with pytest.raises(ConfigError, match="read-only"):
        run_push(TransferConfig(str(texture_store.path), served + "-copy", progress=False))

"""Datasets fetch themselves: a real HTTP server on 127.0.0.1 serves small archives in each
dataset's official layout (real JPEG crops); downloads are checked, resumed, safely unpacked.

The committed specs' checksums are those of the real archives, so the tests fetch with the
committed spec's layout and bounds and the test archives' own sha256 (dataset_archives.test_spec).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from dataset_archives import BUILDERS, make_tar, make_zip, test_spec
from loopback_http import ServerState, serve_folder

from latentcache.cli.main import cli
from latentcache.datasets import DATASETS, build_index, get_dataset
from latentcache.download import DownloadConfig, run_download
from latentcache.download.fetch import RETRIES
from latentcache.download.spec import Checksum, FileSpec, load_spec
from latentcache.errors import ChecksumError, ConfigError, DownloadError, UnsafeArchiveError

REPO = Path(__file__).resolve().parents[1]


def _serve_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in files.items():
        (folder / name).write_bytes(payload)
    return folder


@pytest.fixture(scope="module")
def archives() -> dict[str, dict[str, bytes]]:
    return {name: build() for name, build in BUILDERS.items()}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_download_checks_unpacks_and_a_second_run_does_nothing(tmp_path, archives, name):
    files = archives[name]
    state = ServerState()
    with serve_folder(_serve_files(tmp_path / "srv", files), state) as base:
        spec = test_spec(name, files, base)
        config = DownloadConfig(name, data_root=str(tmp_path / name), progress=False)
        result = run_download(config, spec)
        assert sorted(result.fetched) == sorted(files) == sorted(result.installed)
        root = tmp_path / name
        for f in spec.files:
            for rel in (*f.provides, *f.expect):
                assert (root / rel).exists(), rel
        assert not (root / "downloads" / next(iter(files))).exists()  # archives removed
        assert list((root / "downloads").glob(".extract-*")) == []
        record = json.loads((root / "downloads" / "latentcache-download.json").read_text())
        assert all(record[n]["verified"] and record[n]["algorithm"] == "sha256" for n in files)
        n_requests = len(state.requests)
        again = run_download(config, spec)
        assert again.did_nothing and len(state.requests) == n_requests  # no network, no work


@pytest.mark.parametrize("name", ["minc", "resisc45", "rsscn7", "voc", "coco"])
def test_downloaded_dataset_indexes(tmp_path, archives, name):
    get_dataset("demo")  # fills the registry
    if name not in DATASETS:
        pytest.skip(f"no {name!r} adapter registered yet; its download spec and layout are")
    files = archives[name]
    with serve_folder(_serve_files(tmp_path / "srv", files)) as base:
        run_download(DownloadConfig(name, str(tmp_path / name)), test_spec(name, files, base))
    index = build_index(name, tmp_path / name)
    assert len(index.samples) >= 2 and len(index.split_names) >= 2


def _manifests_with(tmp_path: Path, spec) -> Path:
    """A copy of data_manifests/ whose downloads/<dataset>.json is ``spec`` (for the CLI)."""
    folder = tmp_path / "manifests"
    shutil.copytree(REPO / "data_manifests", folder)
    (folder / "downloads" / f"{spec.dataset}.json").write_text(json.dumps(dataclasses.asdict(spec)))
    return folder


def test_encode_download_fetches_then_encodes_minc(
    tmp_path, archives, monkeypatch, tiny_checkpoint
):
    files = archives["minc"]
    with serve_folder(_serve_files(tmp_path / "srv", files)) as base:
        monkeypatch.setenv(
            "LATENTCACHE_MANIFESTS", str(_manifests_with(tmp_path, test_spec("minc", files, base)))
        )
        args = ["encode", "-d", "minc", "--data-root", str(tmp_path / "minc"), "--download",
                "--codec", "demo", "--out", str(tmp_path / "store"), "--workers", "0",
                "--format", "zarr"]  # fmt: skip
        res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "encoded 12 of 12 images (0 failed)" in res.output
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["dataset"]["name"] == "minc"


def test_without_download_the_missing_dataset_error_names_the_command(tmp_path):
    res = CliRunner().invoke(cli, ["encode", "-d", "minc", "--data-root", str(tmp_path / "none"),
                                   "--codec", "demo", "--out", str(tmp_path / "s")])  # fmt: skip
    assert res.exit_code != 0
    assert f"latentcache download minc --data-root {tmp_path / 'none'}" in res.output


def test_a_dropped_connection_resumes_with_a_range_request(tmp_path, archives):
    files = archives["minc"]
    size = len(files["minc-2500.tar.gz"])
    state = ServerState(drop_after=size // 3, drops=1)
    with serve_folder(_serve_files(tmp_path / "srv", files), state) as base:
        result = run_download(
            DownloadConfig("minc", str(tmp_path / "d")), test_spec("minc", files, base)
        )
    assert result.fetched == ("minc-2500.tar.gz",)
    assert [r for _, r in state.requests] == [None, f"bytes={size // 3}-"]
    assert (tmp_path / "d" / "minc-2500" / "categories.txt").is_file()


def test_a_part_file_left_by_a_failed_run_is_continued_by_the_next(tmp_path, archives):
    files = archives["resisc45"]
    size = len(files["NWPU-RESISC45.zip"])
    state = ServerState(drop_after=size // 8, drops=RETRIES + 1)  # every try breaks off
    root = tmp_path / "d"
    part = root / "downloads" / "NWPU-RESISC45.zip.part"
    with serve_folder(_serve_files(tmp_path / "srv", files), state) as base:
        spec = test_spec("resisc45", files, base)
        with pytest.raises(DownloadError, match="re-run to resume"):
            run_download(DownloadConfig("resisc45", str(root)), spec)
        kept = part.stat().st_size
        assert kept == (RETRIES + 1) * (size // 8) and not (root / "NWPU-RESISC45").exists()
        state.requests.clear()
        run_download(DownloadConfig("resisc45", str(root)), spec)
    assert [r for _, r in state.requests] == [f"bytes={kept}-"]
    assert not part.exists() and (root / "NWPU-RESISC45" / "airplane").is_dir()


def test_a_wrong_checksum_is_refused_and_the_file_kept_aside(tmp_path, archives):
    files = archives["rsscn7"]
    root = tmp_path / "d"
    (root / "mine").mkdir(parents=True)
    (root / "mine" / "keep.txt").write_text("the user's")
    with serve_folder(_serve_files(tmp_path / "srv", files)) as base:
        spec = test_spec("rsscn7", files, base)
        wrong = dataclasses.replace(spec.files[0], checksum=Checksum("md5", "0" * 32, "test"))
        with pytest.raises(ChecksumError) as exc:
            run_download(
                DownloadConfig("rsscn7", str(root)), dataclasses.replace(spec, files=(wrong,))
            )
    message = str(exc.value)
    got = __import__("hashlib").md5(files["RSSCN7-master.zip"]).hexdigest()
    assert "\n" not in message and "RSSCN7-master.zip" in message
    assert f"expected {'0' * 32}, got {got}" in message
    assert (root / "downloads" / "RSSCN7-master.zip.bad").read_bytes() == files["RSSCN7-master.zip"]
    assert (root / "mine" / "keep.txt").read_text() == "the user's"
    assert not (root / "RSSCN7-master").exists()


def _unsafe_run(tmp_path: Path, filename: str, payload: bytes, fmt: str, **bounds):
    spec = load_spec("minc")
    f = dataclasses.replace(spec.files[0], filename=filename, format=fmt, expect=(), **bounds)
    root = tmp_path / "d"
    with serve_folder(_serve_files(tmp_path / "srv", {filename: payload})) as base:
        f = dataclasses.replace(
            f,
            urls=(f"{base}/{filename}",),
            checksum=Checksum("sha256", __import__("hashlib").sha256(payload).hexdigest(), "t"),
        )
        with pytest.raises(UnsafeArchiveError) as exc:
            run_download(DownloadConfig("minc", str(root)), dataclasses.replace(spec, files=(f,)))
    assert "\n" not in str(exc.value)
    assert not (root / "minc-2500").exists() and not (tmp_path / "evil.txt").exists()
    assert list((root / "downloads").glob(".extract-*")) == []
    return str(exc.value)


def _tar_with(member: tarfile.TarInfo, payload: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        ok = tarfile.TarInfo("minc-2500/categories.txt")
        ok.size = 6
        tf.addfile(ok, io.BytesIO(b"brick\n"))
        member.size = len(payload) if member.isfile() else 0
        tf.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return buf.getvalue()


def test_a_tar_with_a_traversal_member_is_refused(tmp_path):
    message = _unsafe_run(
        tmp_path, "minc-2500.tar.gz", _tar_with(tarfile.TarInfo("minc-2500/../../evil.txt")), "tar"
    )
    assert "'minc-2500/../../evil.txt'" in message and "outside the folder" in message


def test_a_tar_with_an_absolute_member_or_an_escaping_link_is_refused(tmp_path):
    _unsafe_run(
        tmp_path / "a", "minc-2500.tar.gz", _tar_with(tarfile.TarInfo("/tmp/evil.txt")), "tar"
    )
    link = tarfile.TarInfo("minc-2500/images")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../etc"
    assert "is a link to '../../../etc'" in _unsafe_run(
        tmp_path / "b", "minc-2500.tar.gz", _tar_with(link), "tar"
    )


def test_a_zip_with_a_traversal_member_or_too_many_bytes_is_refused(tmp_path):
    evil = make_zip({"NWPU-RESISC45/a.jpg": b"x", "../evil.txt": b"boom"})
    assert "'../evil.txt'" in _unsafe_run(tmp_path / "a", "NWPU-RESISC45.zip", evil, "zip")
    bomb = make_zip({"minc-2500/zeros.bin": bytes(1 << 20)})  # 1 MiB that deflates to 1 KiB
    message = _unsafe_run(tmp_path / "b", "minc-2500.zip", bomb, "zip", max_bytes=1 << 16)
    assert "more than 65536 bytes" in message


def test_a_tar_bounded_in_members(tmp_path):
    tree = {f"minc-2500/f{i}.txt": b"x" for i in range(20)}
    message = _unsafe_run(tmp_path, "minc-2500.tar.gz", make_tar(tree), "tar", max_members=5)
    assert "5 members" in message


def test_no_recorded_checksum_needs_trust_unverified_and_is_recorded_as_local(tmp_path, archives):
    files = archives["rsscn7"]
    assert load_spec("rsscn7").files[0].checksum is None  # the committed spec says so
    root = tmp_path / "d"
    with serve_folder(_serve_files(tmp_path / "srv", files)) as base:
        spec = test_spec("rsscn7", files, base)
        spec = dataclasses.replace(spec, files=(dataclasses.replace(spec.files[0], checksum=None),))
        with pytest.raises(ConfigError, match="--trust-unverified"):
            run_download(DownloadConfig("rsscn7", str(root)), spec)
        assert not root.exists()
        result = run_download(DownloadConfig("rsscn7", str(root), trust_unverified=True), spec)
    digest = __import__("hashlib").sha256(files["RSSCN7-master.zip"]).hexdigest()
    assert result.unverified == {"RSSCN7-master.zip": digest}
    record = json.loads((root / "downloads" / "latentcache-download.json").read_text())
    assert record["RSSCN7-master.zip"]["verified"] is False
    assert (
        record["RSSCN7-master.zip"]["sha256_local"] == digest
        and "checksum" not in record["RSSCN7-master.zip"]
    )


def test_offline_one_line_names_the_url_and_where_to_place_the_file(tmp_path, archives):
    files = archives["minc"]
    with serve_folder(tmp_path) as base:  # a port that is closed once the server stops
        spec = test_spec("minc", files, base)
    root = tmp_path / "d"
    with pytest.raises(DownloadError) as exc:
        run_download(DownloadConfig("minc", str(root)), spec)
    message = str(exc.value)
    assert "\n" not in message and spec.files[0].urls[0] in message
    assert (
        f"put minc-2500.tar.gz (sha256 {spec.files[0].checksum.value}) in {root / 'downloads'}/"
        in message
    )
    assert "--mirror" in message
    # placed by hand where the message says: checked and unpacked with no network
    (root / "downloads").mkdir(parents=True, exist_ok=True)
    (root / "downloads" / "minc-2500.tar.gz").write_bytes(files["minc-2500.tar.gz"])
    result = run_download(DownloadConfig("minc", str(root)), spec)
    assert result.fetched == () and result.installed == ("minc-2500.tar.gz",)
    assert (root / "minc-2500" / "labels" / "train1.txt").is_file()
    assert (root / "downloads" / "minc-2500.tar.gz").is_file()  # the user's file stays


@pytest.mark.parametrize("scheme", ["file", "memory", "http-env"])
def test_a_mirror_replaces_the_host_and_keeps_the_checksums(
    tmp_path, archives, scheme, monkeypatch
):
    files = archives["coco"]
    srv = _serve_files(tmp_path / "srv", files)
    dead = test_spec("coco", files, "http://127.0.0.1:9")  # nothing listens on port 9
    root = tmp_path / "d"
    if scheme == "file":
        run_download(DownloadConfig("coco", str(root), mirror=srv.as_uri()), dead)
    elif scheme == "memory":
        import fsspec

        fs = fsspec.filesystem("memory")
        for name, payload in files.items():
            fs.pipe(f"/mirror22/{name}", payload)
        run_download(DownloadConfig("coco", str(root), mirror="memory://mirror22"), dead)
    else:
        with serve_folder(srv) as base:
            monkeypatch.setenv("LATENTCACHE_MIRROR", base)
            run_download(DownloadConfig("coco", str(root)), dead)
    assert (root / "annotations" / "instances_val2017.json").is_file()
    assert (root / "train2017" / "000000000009.jpg").is_file()


def test_a_bad_mirror_file_is_refused_by_the_recorded_checksum(tmp_path, archives):
    files = archives["coco"]
    spec = test_spec("coco", files, "http://127.0.0.1:9")
    srv = _serve_files(
        tmp_path / "srv", {**files, "val2017.zip": make_zip({"val2017/x.jpg": b"y"})}
    )
    with pytest.raises(ChecksumError, match="val2017.zip: sha256 expected"):
        run_download(DownloadConfig("coco", str(tmp_path / "d"), mirror=srv.as_uri()), spec)
    assert (tmp_path / "d" / "annotations").is_dir()  # the files before it stay installed


def test_ctrl_c_leaves_a_resumable_part_file(tmp_path):
    payload = os.urandom(3 << 20)
    spec = load_spec("voc")
    f = FileSpec("notes.bin", ("x",), None, "file", ("notes.bin",), max_bytes=4 << 20)
    state = ServerState(delay=0.05)
    root = tmp_path / "d"
    with serve_folder(_serve_files(tmp_path / "srv", {f.filename: payload}), state) as base:
        f = dataclasses.replace(
            f, urls=(f"{base}/{f.filename}",),
            checksum=Checksum("sha256", __import__("hashlib").sha256(payload).hexdigest(), "t"),
        )  # fmt: skip
        manifests = _manifests_with(tmp_path, dataclasses.replace(spec, files=(f,)))
        env = {**os.environ, "LATENTCACHE_MANIFESTS": str(manifests), "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "latentcache", "download", "voc", "--data-root", str(root)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        part = root / "downloads" / "notes.bin.part"
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, out
        assert b"re-run the same command to resume" in out
        kept = part.stat().st_size
        assert 0 < kept < len(payload)
        state.delay, state.requests[:] = 0.0, []
        res = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert state.requests[0][1].startswith("bytes=") and int(state.requests[0][1][6:-1]) >= kept
    assert (root / "notes.bin").read_bytes() == payload


def test_download_cli_lists_the_specs_and_refuses_unverified(tmp_path):
    res = CliRunner().invoke(cli, ["download", "--list"])
    assert res.exit_code == 0
    assert "md5 6cd6e144f989b92b3379bac3b3de84fd (torchvision" in res.output
    assert "no recorded checksum" in res.output
    res = CliRunner().invoke(cli, ["download", "rsscn7", "--data-root", str(tmp_path)])
    assert res.exit_code != 0 and "--trust-unverified" in res.output
    res = CliRunner().invoke(cli, ["download", "nope"])
    assert res.exit_code != 0 and "No download spec" in res.output


def test_zip_symlink_leaving_the_folder_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("minc-2500/categories.txt", "brick\n")
        info = zipfile.ZipInfo("minc-2500/link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "../../outside")
    assert "is a link to" in _unsafe_run(tmp_path, "minc-2500.zip", buf.getvalue(), "zip")


def test_a_whole_part_file_is_answered_416_and_finished_without_refetching(tmp_path, archives):
    files = archives["rsscn7"]
    root = tmp_path / "d"
    (root / "downloads").mkdir(parents=True)
    (root / "downloads" / "RSSCN7-master.zip.part").write_bytes(files["RSSCN7-master.zip"])
    state = ServerState()
    with serve_folder(_serve_files(tmp_path / "srv", files), state) as base:
        result = run_download(DownloadConfig("rsscn7", str(root)), test_spec("rsscn7", files, base))
    assert result.fetched == ("RSSCN7-master.zip",)
    assert [r for _, r in state.requests] == [f"bytes={len(files['RSSCN7-master.zip'])}-"]
    assert (root / "RSSCN7-master" / "aGrass" / "a001.jpg").is_file()


def test_one_download_per_data_root_at_a_time(tmp_path, archives):
    import fcntl

    files = archives["rsscn7"]
    root = tmp_path / "d"
    (root / "downloads").mkdir(parents=True)
    with open(root / "downloads" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running download holds it
        with serve_folder(_serve_files(tmp_path / "srv", files)) as base:
            spec = test_spec("rsscn7", files, base)
            with pytest.raises(DownloadError, match="another download into"):
                run_download(DownloadConfig("rsscn7", str(root)), spec)
    assert not list((root / "downloads").glob("*.part"))


def test_committed_checksums_equal_the_installed_torchvision_sources():
    """The VOC and SBD md5s are torchvision's: read them from the installed torchvision."""
    from torchvision.datasets import SBDataset
    from torchvision.datasets.voc import DATASET_YEAR_DICT

    voc = {f.filename: f for f in load_spec("voc").files}
    assert voc["VOCtrainval_11-May-2012.tar"].checksum.value == DATASET_YEAR_DICT["2012"]["md5"]
    assert DATASET_YEAR_DICT["2012"]["url"] in voc["VOCtrainval_11-May-2012.tar"].urls
    assert voc["benchmark.tgz"].checksum.value == SBDataset.md5
    assert voc["benchmark.tgz"].urls[0] == SBDataset.url
    for name in ("minc", "resisc45", "voc", "coco"):  # every recorded value names its source
        assert all(f.checksum and f.checksum.source for f in load_spec(name).files)

"""The CLI through click's CliRunner: option errors, offline weights, inspect, verify."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from latentcache.cli.main import cli


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def test_help_does_not_import_torch():
    code = "import sys, latentcache.cli.main as m; m.cli(['--help'], standalone_mode=False); assert 'torch' not in sys.modules and 'zarr' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-q", "0"], 'Invalid quality "0", should be between (1, 8)'),
        (["-q", "9"], 'Invalid quality "9"'),
        (["--shard-size", "0"], 'Invalid shard_size "0"'),
    ],
)
def test_bad_options_get_one_clear_line(tmp_path, texture_root, args, message):
    res = run(
        "encode", "-d", "imagefolder", "--data-root", texture_root, "--out", tmp_path / "o", *args
    )
    assert res.exit_code != 0 and message in res.output and "Traceback" not in res.output


def test_unknown_dataset(tmp_path):
    res = run("encode", "-d", "imagenet21k", "--out", tmp_path / "o")
    assert res.exit_code != 0 and 'Unknown dataset "imagenet21k". Available:' in res.output


def test_missing_dataset_root_says_where_to_get_it(tmp_path):
    res = run("encode", "-d", "minc", "--data-root", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert res.exit_code != 0
    assert (
        str(tmp_path / "nowhere") in res.output
        and "--data-root" in res.output
        and "minc-2500" in res.output
    )


def test_offline_zoo_weights_error_names_file_url_and_checkpoint(tmp_path, texture_root):
    env = {"TORCH_HOME": str(tmp_path / "torch"), "LATENTCACHE_OFFLINE": "1"}
    res = run(
        "encode",
        "-d",
        "imagefolder",
        "--data-root",
        texture_root,
        "-q",
        "8",
        "--out",
        tmp_path / "o",
        env=env,
    )
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert (
        str(tmp_path / "torch" / "hub" / "checkpoints" / "bmshj2018-hyperprior-8-a583f0cf.pth.tar")
        in res.output
    )
    assert (
        "https://compressai.s3.amazonaws.com/models/v1/bmshj2018-hyperprior-8-a583f0cf.pth.tar"
        in res.output
    )
    assert "--checkpoint" in res.output


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory, texture_root, tiny_checkpoint):
    out = tmp_path_factory.mktemp("cli") / "store"
    res = run(
        "encode",
        "-d",
        "imagefolder",
        "--data-root",
        texture_root,
        "--checkpoint",
        tiny_checkpoint,
        "--out",
        out,
        "--shard-size",
        "5",
        "--workers",
        "0",
    )
    assert res.exit_code == 0, res.output
    assert "encoded 18 of 18 images (0 failed)" in res.output and "mean true bpp" in res.output
    return out


def test_existing_output_needs_overwrite(cli_store, texture_root, tiny_checkpoint):
    args = [
        "encode",
        "-d",
        "imagefolder",
        "--data-root",
        texture_root,
        "--checkpoint",
        tiny_checkpoint,
        "--out",
        cli_store,
        "--workers",
        "0",
    ]
    res = run(*args)
    assert res.exit_code != 0 and "already holds a finished store; pass --overwrite" in res.output


def test_checkpoint_identity_recorded(cli_store, tiny_codec):
    m = json.loads((cli_store / "manifest.json").read_text())
    assert m["codec"]["source"] == "checkpoint" and m["codec"]["checkpoint"] == "tiny.pth"
    assert m["codec"]["weights_sha256"] == tiny_codec.weights_sha256
    assert m["command"].startswith("latentcache encode")


def test_inspect_prints_the_card_and_json(cli_store):
    res = run("inspect", cli_store)
    assert (
        res.exit_code == 0
        and "bmshj2018-hyperprior quality unknown" in res.output
        and "train" in res.output
    )
    res = run("inspect", cli_store, "--json")
    assert json.loads(res.stdout)["totals"]["stored"] == 18


def test_verify_intact_and_redecode(cli_store, tiny_checkpoint):
    res = run("verify", cli_store)
    assert res.exit_code == 0 and res.output.startswith("OK")
    res = run("verify", cli_store, "--redecode", "--checkpoint", tiny_checkpoint)
    assert res.exit_code == 0 and "36 samples re-decoded (18 webdataset, 18 zarr)" in res.output, (
        res.output
    )


@pytest.mark.parametrize("target", ["zarr/train/y_hat/c/1/0/0/0", "wds/test-000000.tar"])
def test_verify_names_a_tampered_shard(tmp_path, cli_store, target):
    store = tmp_path / "copy"
    shutil.copytree(cli_store, store)
    path = store / target
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    res = run("verify", store)
    assert res.exit_code == 1 and target in res.output


def test_verify_redecode_catches_latents_that_do_not_match_their_bytes(
    tmp_path, cli_store, tiny_checkpoint
):
    """A producer bug (stored y_hat != bitstream) with correct checksums: only --redecode sees it."""
    import zarr

    from latentcache.store.manifest import file_entry, read_manifest, write_manifest

    store = tmp_path / "copy"
    shutil.copytree(cli_store, store)
    arr = zarr.open_group(store / "zarr", mode="r+")["train"]["y_hat"]
    rows = arr[0:5]
    rows[0, 0, 0, 0] += 1
    arr[0:5] = rows
    m = read_manifest(store)
    for sh in m["shards"]:
        if sh["split"] == "train" and sh["index"] == 0:
            sh["files"]["zarr"] = [
                file_entry(store / f["path"], store) for f in sh["files"]["zarr"]
            ]
    write_manifest(store, {k: v for k, v in m.items() if k not in ("format", "version")})
    assert run("verify", store).exit_code == 0
    res = run("verify", store, "--redecode", "--checkpoint", tiny_checkpoint)
    assert res.exit_code == 1 and "y_hat differs" in res.output

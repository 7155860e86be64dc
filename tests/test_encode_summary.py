"""encode's closing summary names every failed file with its reason (up to 20, then a pointer)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import write_texture_folder

from latentcache.cli.main import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _encode(root, out, checkpoint):
    args = ["encode", "-d", "imagefolder", "--data-root", root, "--checkpoint", checkpoint]
    args += ["--out", out, "--workers", "0", "--format", "zarr"]
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("bad", [3, 23])
def test_summary_lists_failed_files(tmp_path, tiny_checkpoint, bad):
    root = write_texture_folder(tmp_path / "data", per_class=1, size=64)
    for i in range(bad):  # not images: empty files and text
        (root / "brick" / f"bad_{i:02d}.png").write_bytes(b"" if i % 2 else b"just text\n")
    res = _encode(root, tmp_path / "store", tiny_checkpoint)
    assert res.exit_code == 0, res.output
    failures = json.loads((tmp_path / "store" / "manifest.json").read_text())["failures"]
    assert len(failures) == bad
    lines = res.output.splitlines()
    assert f"failed files ({bad}):" in lines
    named = [f for f in failures if f"  {f['path']}: {f['reason']}" in lines]
    assert len(named) == min(bad, 20)
    more = [line for line in lines if "more:" in line]
    if bad > 20:
        assert more == [
            f"  and {bad - 20} more: `latentcache inspect {tmp_path / 'store'} --json` lists them all"
        ]
    else:
        assert not more

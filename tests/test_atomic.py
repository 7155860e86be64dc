"""One atomic-write helper: the old file or the new one, never a part, no temporary left."""

from __future__ import annotations

import json

import pytest

from latentcache.atomic import atomic_write, write_json_atomic


def test_success_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "f.json"
    write_json_atomic(path, {"b": 1, "a": [1, 2]})
    write_json_atomic(path, {"b": 2, "a": None})
    assert path.read_text() == '{\n "a": null,\n "b": 2\n}\n'
    assert json.loads(path.read_text()) == {"a": None, "b": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.json"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half way"), atomic_write(path) as f:
        f.write(b"new, partly")
        raise RuntimeError("half way")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]

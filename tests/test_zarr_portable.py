"""The Zarr layout is portable and protected: spec-only metadata, tensorstore reads every array,
no warnings on encode, and every missing or damaged file is refused by name (verify and reads)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from latentcache.config import EncodeConfig
from latentcache.errors import StoreCorruptError
from latentcache.pipeline.encode import run_encode
from latentcache.store import open_store
from latentcache.store.manifest import read_manifest, write_manifest
from latentcache.store.verify import verify_store
from latentcache.store.zarr_store import decode_keys

REPO = Path(__file__).resolve().parents[1]
TS_SCRIPT = REPO / "scripts" / "read_with_tensorstore.py"
SPEC_DTYPES = {"bool", *(f"{k}{b}" for k in ("int", "uint") for b in (8, 16, 32, 64))}
SPEC_DTYPES |= {"float16", "float32", "float64"}
SPEC_CODECS = {"bytes", "transpose", "blosc", "zstd", "gzip", "crc32c", "sharding_indexed"}
KEYS = {"cafe/a-much-longer-file-name_0", "cafe/c1", "brick/b", "brick/bad"}


def _encode(root: Path, out: Path, codec, **kw) -> Path:
    config = EncodeConfig(dataset="imagefolder", data_root=str(root), out=str(out), workers=0, **kw)
    run_encode(config, codec)
    return out


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, tiny_codec, photo_images, one_torch_thread):
    """Keys of different UTF-8 lengths, a failed image (a hole), 3 shards; warnings recorded."""
    root = tmp_path_factory.mktemp("unicode-images")
    for i, key in enumerate(sorted(KEYS - {"brick/bad"})):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo_images[i % 3][:64, :64]).save(root / f"{key}.png")
    (root / "brick" / "bad.png").write_bytes(b"not an image")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _encode(root, tmp_path_factory.mktemp("small") / "s", tiny_codec, shard_size=2)
    return out, caught


def test_encode_prints_no_warnings(small_store):
    _, caught = small_store
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []


def test_unicode_keys_digests_and_bitstreams_round_trip(small_store):
    path, _ = small_store
    m = read_manifest(path)
    assert m["totals"]["failed"] == 1 and m["failures"][0]["key"] == "brick/bad"
    rows = open_store(path).zarr_split("train").read(0, 100, bitstreams=True)
    assert set(rows["key"]) == KEYS - {"brick/bad"}
    for i in range(len(rows["key"])):
        nbytes = len(rows["y_string"][i]) + len(rows["z_string"][i])
        assert rows["bpp"][i] == pytest.approx(8 * nbytes / 64**2, rel=1e-6)
    group = zarr.open_group(path / "zarr", mode="r")["train"]
    sha = [bytes(r).hex() for r in group["source_sha256"][:] if r.any()]
    assert len(sha) == 3 and all(len(s) == 64 for s in sha)


def test_keys_are_zero_padded_utf8():
    keys = ["café/ünï", "a", ""]  # "" is a hole
    raw = np.zeros((3, 12), dtype=np.uint8)
    for i, k in enumerate(keys):
        b = k.encode()
        raw[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    assert list(decode_keys(raw)) == keys


def _codec_names(codecs: list[dict]) -> list[str]:
    names = []
    for c in codecs:
        names.append(c["name"])
        if c["name"] == "sharding_indexed":
            names += _codec_names(c["configuration"]["codecs"])
            names += _codec_names(c["configuration"]["index_codecs"])
    return names


def _ends_with_crc32c(codecs: list[dict]) -> bool:
    if codecs[-1]["name"] == "sharding_indexed":
        cfg = codecs[-1]["configuration"]
        return cfg["codecs"][-1]["name"] == cfg["index_codecs"][-1]["name"] == "crc32c"
    return codecs[-1]["name"] == "crc32c"


@pytest.mark.parametrize("repr_", ["index", "float16", "z_hat"])
def test_every_array_uses_only_spec_types_and_codecs(
    tmp_path, small_store, tiny_codec, photo_images, repr_
):
    path, _ = small_store
    if repr_ != "index":
        root = tmp_path / "img" / "c"
        root.mkdir(parents=True)
        Image.fromarray(photo_images[0][:64, :64]).save(root / "a.png")
        path = _encode(tmp_path / "img", tmp_path / repr_, tiny_codec, scales_repr=repr_)
    metas = [json.loads(f.read_text()) for f in sorted((path / "zarr").rglob("zarr.json"))]
    arrays = [m for m in metas if m["node_type"] == "array"]
    assert len(arrays) >= 12 and all(m["zarr_format"] == 3 for m in metas)
    for m in arrays:
        assert m["data_type"] in SPEC_DTYPES, m
        assert set(_codec_names(m["codecs"])) <= SPEC_CODECS, m["codecs"]
        assert _ends_with_crc32c(m["codecs"]), m["codecs"]
        assert m["chunk_grid"]["name"] == "regular" and m["chunk_key_encoding"]["name"] == "default"


def _tensorstore_python() -> Path | None:
    exe = Path(
        os.environ.get("LATENTCACHE_TENSORSTORE_PYTHON", REPO / ".venv-tensorstore/bin/python")
    )
    return exe if exe.is_file() else None


def _tensorstore_arrays(path: Path) -> dict:
    exe = _tensorstore_python()
    if exe is None:
        pytest.skip("no tensorstore environment: `make tensorstore` builds it (make test does)")
    res = subprocess.run(
        [str(exe), str(TS_SCRIPT), str(path)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    return {d["path"]: d for d in map(json.loads, res.stdout.splitlines())}


def _zarr_python_arrays(path: Path) -> dict:
    root = zarr.open_group(path / "zarr", mode="r")
    expect = {}
    for split, group in root.groups():
        named = [
            *group.arrays(),
            *((f"bitstreams/{n}", a) for n, a in group["bitstreams"].arrays()),
        ]
        for name, arr in named:
            a = np.ascontiguousarray(arr[...])
            expect[f"{split}/{name}"] = {
                "path": f"{split}/{name}",
                "shape": list(a.shape),
                "dtype": a.dtype.str,
                "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
            }
    return expect


def test_tensorstore_reads_every_array_as_zarr_python_does(small_store):
    path, _ = small_store
    got = _tensorstore_arrays(path)
    expect = _zarr_python_arrays(path)
    assert len(expect) == 12 + 2  # 12 per-row arrays and one bitstream array per shard (2 shards)
    assert got == expect


def test_tensorstore_reads_a_segmentation_store_masks_included(tmp_path, tiny_codec):
    from seg_helpers import encode_seg_store

    out = tmp_path / "seg"
    encode_seg_store(tmp_path / "data", out, tiny_codec, formats=("zarr",))
    got = _tensorstore_arrays(out)
    expect = _zarr_python_arrays(out)
    assert {"train/mask", "val/mask", "train/canvas_offset"} <= set(expect)
    assert got == expect


def _damage(path: Path, how: str) -> None:
    if how == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()


DAMAGE = [
    ("flip", "zarr/train/y_hat/c/1/0/0/0", "sha256 differs", "crc32c checksum mismatch"),
    ("flip", "zarr/train/key/c/1/0", "sha256 differs", "crc32c checksum mismatch"),
    ("flip", "zarr/train/bitstreams/000001/c/0", "sha256 differs", "crc32c checksum mismatch"),
    ("truncate", "zarr/train/scales_hat/c/1/0/0/0", "bytes, manifest says", ""),
    ("delete", "zarr/train/y_hat/c/1/0/0/0", "missing", "missing"),
    ("delete", "zarr/train/label/c/1", "missing", "missing"),
    ("delete", "zarr/train/y_hat/zarr.json", "missing", "missing"),
    ("delete", "zarr/train/bitstreams/000001/zarr.json", "missing", "missing"),
]


@pytest.mark.parametrize(("how", "target", "verify_says", "read_says"), DAMAGE)
def test_damaged_zarr_file_is_refused_by_name(
    tmp_path, texture_store, how, target, verify_says, read_says
):
    store = tmp_path / "copy"
    shutil.copytree(texture_store.path, store)
    _damage(store / target, how)
    problems = verify_store(open_store(store)).problems
    assert any(p.startswith(f"{target}: ") and verify_says in p for p in problems), problems
    with pytest.raises(StoreCorruptError, match=f"{target}.*{read_says}") as err:
        open_store(store).zarr_split("train").read(4, 8, bitstreams=True)  # rows of shard 1
    assert "\n" not in str(err.value)


def test_a_file_the_manifest_does_not_list_fails_verify(tmp_path, texture_store):
    store = tmp_path / "copy"
    shutil.copytree(texture_store.path, store)
    m = read_manifest(store)
    shard = next(sh for sh in m["shards"] if sh["split"] == "train" and sh["index"] == 1)
    shard["files"]["zarr"] = [f for f in shard["files"]["zarr"] if "/z_shape/" not in f["path"]]
    m["zarr_metadata"] = [f for f in m["zarr_metadata"] if f["path"] != "zarr/test/bpp/zarr.json"]
    write_manifest(store, {k: v for k, v in m.items() if k not in ("format", "version")})
    problems = verify_store(open_store(store)).problems
    assert "zarr/train/z_shape/c/1/0: not listed in the manifest" in problems
    assert "zarr/test/bpp/zarr.json: not listed in the manifest" in problems


def test_manifest_lists_every_zarr_file(texture_store):
    m = texture_store.manifest
    listed = {f["path"] for sh in m["shards"] for f in sh["files"].get("zarr", [])}
    listed |= {f["path"] for f in m["zarr_metadata"]}
    on_disk = {
        p.relative_to(texture_store.path).as_posix()
        for p in (texture_store.path / "zarr").rglob("*")
        if p.is_file()
    }
    assert listed == on_disk

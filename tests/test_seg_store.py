"""Segmentation stores: masks at full resolution in both layouts, canvas offsets, the task
in the manifest, and hostile mask members refused in one line."""

from __future__ import annotations

import io
import json

import numcodecs
import numpy as np
import pytest
from PIL import Image
from seg_helpers import SEG_SIZES, encode_seg_store, position_mask


@pytest.fixture(scope="module")
def seg_store(tmp_path_factory, tiny_codec):
    from latentcache.store import open_store

    root = tmp_path_factory.mktemp("segdata")
    out = tmp_path_factory.mktemp("segstores") / "store"
    encode_seg_store(root, out, tiny_codec)
    return open_store(out)


def _expected_offset(h, w):
    top, left = -(-h // 64) * 64 - h, -(-w // 64) * 64 - w
    return top // 2, left // 2


def test_manifest_names_the_task_and_counts_reconcile(seg_store):
    m = seg_store.manifest
    assert m["task"] == {"name": "segmentation", "ignore_index": 255}
    assert seg_store.task_unit.name == "segmentation"
    assert m["totals"]["indexed"] == m["totals"]["stored"] + m["totals"]["failed"] == 6
    assert m["splits"]["train"]["image_size_max"] == [90, 130]


def test_zarr_rows_hold_masks_offsets_and_sizes(seg_store):
    group = seg_store.zarr_split("train").group
    assert group["mask"].dtype == np.uint8 and group["mask"].shape == (4, 90, 130)
    assert group["mask"].fill_value == 255
    rows = {}
    for start, stop in seg_store.zarr_split("train").blocks():
        got = seg_store.zarr_split("train").read(start, stop)
        for i, key in enumerate(got["key"]):
            rows[key] = {k: got[k][i] for k in ("mask", "image_size", "canvas_offset")}
    assert len(rows) == 4
    for key, r in rows.items():
        h, w = SEG_SIZES[int(key[2:])]
        assert tuple(r["image_size"]) == (h, w)
        assert tuple(r["canvas_offset"]) == _expected_offset(h, w)
        assert np.array_equal(r["mask"][:h, :w], position_mask(h, w))
        assert (r["mask"][h:] == 255).all() and (r["mask"][:, w:] == 255).all()


def test_webdataset_masks_decode_with_plain_webdataset(seg_store):
    import webdataset as wds

    urls = seg_store.wds_shards("train")
    seen = 0
    for s in wds.WebDataset(urls, shardshuffle=False).decode("l8"):
        info = s["json"]
        h, w = info["image_size"]
        assert tuple(info["canvas_offset"]) == _expected_offset(h, w)
        assert s["mask.png"].dtype == np.uint8
        assert np.array_equal(s["mask.png"], position_mask(h, w))
        seen += 1
    assert seen == 4
    # the loader's copy: the README's one handler for the latents reads it as well
    npy_zst = wds.handle_extension(
        "npy.zst", lambda b: np.load(io.BytesIO(numcodecs.Zstd().decode(b)))
    )
    seen = 0
    for s in wds.WebDataset(urls, shardshuffle=False).decode(npy_zst):
        h, w = s["json"]["image_size"]
        assert s["mask.npy.zst"].dtype == np.uint8
        assert np.array_equal(s["mask.npy.zst"], position_mask(h, w))
        seen += 1
    assert seen == 4
    ours = list(seg_store.wds_samples("train"))
    assert all(np.array_equal(s["mask"], position_mask(*s["info"]["image_size"])) for s in ours)


def test_verify_passes(seg_store):
    from latentcache.store.verify import verify_store

    report = verify_store(seg_store)
    assert report.ok, report.problems


def _png(a: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).convert(mode).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png(h: int, w: int) -> bytes:
    """A valid PNG header declaring h x w, with a tiny compressed body (zeros compress)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\0" * (w + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "member, reason",
    [
        (lambda h, w: _png(np.zeros((h, w), np.uint16), "I;16"), "mode I;16"),
        (lambda h, w: _png(np.zeros((h, w, 3), np.uint8), "RGB"), "mode RGB"),
        (lambda h, w: _bomb_png(40000, 40000), "decompression bomb"),
        (lambda h, w: _png(np.zeros((h + 1, w), np.uint8), "L"), "its image is"),
        (lambda h, w: b"\x93NUMPY" + b"\0" * 50, "not a PNG"),
    ],
)
def test_hostile_mask_member_is_refused_in_one_line(seg_store, member, reason):
    _assert_refused(seg_store, "mask.png", member, reason)


def _first_raw_sample(store) -> dict:
    from latentcache.store.wds_store import checked_raw_samples

    entries = store.wds_entries("train")
    rel = next(iter(entries))
    with store.open_file(rel) as f:
        return next(checked_raw_samples(f, entries[rel]))


def _assert_refused(store, name: str, member, reason: str) -> None:
    """The first sample with its member ``name`` replaced by ``member(h, w)`` is refused
    by the full read, in one line naming ``reason``."""
    from latentcache.store.wds_store import parse_sample

    raw = _first_raw_sample(store)
    h, w = json.loads(raw["json"])["image_size"]
    with pytest.raises(ValueError) as err:
        parse_sample({**raw, name: member(h, w)}, store.sample_limits("train"))
    assert reason in str(err.value) and "\n" not in str(err.value)


def _npy_zst(a: np.ndarray, declared: int | None = None) -> bytes:
    """``a`` as a Zstandard .npy; ``declared``: the content size its frame claims instead."""
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    frame = bytes(numcodecs.Zstd(level=3).encode(buf.getvalue()))
    return frame if declared is None else _with_content_size(frame, declared)


def _with_content_size(frame: bytes, size: int) -> bytes:
    """A zstd frame rewritten to declare ``size`` decompressed bytes (8-byte field)."""
    import struct

    fhd = frame[4]
    fcs_code, single = fhd >> 6, (fhd >> 5) & 1
    did = [0, 1, 2, 4][fhd & 3]
    pos = 5 + (0 if single else 1) + did
    n = [1 if single else 0, 2, 4, 8][fcs_code]
    new_fhd = (3 << 6) | (fhd & 0x3F)
    return frame[:4] + bytes([new_fhd]) + frame[5:pos] + struct.pack("<Q", size) + frame[pos + n :]


@pytest.mark.parametrize(
    "member, reason",
    [
        (lambda h, w: _npy_zst(np.zeros((h, w), np.int16)), "dtype int16"),
        (lambda h, w: _npy_zst(np.zeros((h, w), object)), "nothing is unpickled"),
        (lambda h, w: _npy_zst(np.zeros((1, h, w), np.uint8)), "expected (h, w)"),
        (lambda h, w: _npy_zst(np.zeros((h - 1, w), np.uint8)), "its image is"),
        (lambda h, w: _npy_zst(np.zeros((4000, 4000), np.uint8)), "zstd bomb or oversized"),
        (lambda h, w: _npy_zst(np.zeros((h, w), np.uint8), 1 << 40), "zstd bomb or oversized"),
        (lambda h, w: b"\x28\xb5\x2f\xfd" + b"\0" * 20, "mask.npy.zst"),
        (lambda h, w: _npy_zst(np.full((h, w), 7, np.uint8)), "differ at"),
    ],
)
def test_hostile_mask_array_member_is_refused_in_one_line(seg_store, member, reason):
    """The loader's copy of the mask: checked as the latents are (the zstd frame bounded by
    the split's largest mask, the .npy header before the data), and equal to the PNG."""
    _assert_refused(seg_store, "mask.npy.zst", member, reason)


def test_the_loader_reads_the_array_member_and_a_png_alone_from_stores_before(seg_store):
    """read_member (the loader's read) takes mask.npy.zst when the sample has it, without
    decoding the PNG; a sample with the PNG alone (stores written before) reads as ever."""
    task, limits = seg_store.task_unit, seg_store.sample_limits("train")
    raw = _first_raw_sample(seg_store)
    hw = tuple(json.loads(raw["json"])["image_size"])
    expected = position_mask(*hw)
    broken_png = {**raw, "mask.png": b"not a png"}
    assert np.array_equal(task.read_member(broken_png, "mask", hw, limits.max_image_hw), expected)
    png_only = {k: v for k, v in raw.items() if k != "mask.npy.zst"}
    assert np.array_equal(task.read_member(png_only, "mask", hw, limits.max_image_hw), expected)
    assert np.array_equal(task.parse_members(png_only, hw, limits.max_image_hw)["mask"], expected)
    with pytest.raises(ValueError, match="missing member"):
        task.parse_members({"json": raw["json"]}, hw, limits.max_image_hw)


def test_a_resealed_tar_whose_two_masks_differ_is_damaged_for_verify(seg_store, tmp_path):
    """The loader reads mask.npy.zst alone; verify and wds_samples read both members, so a
    tar rewritten (and resealed in the manifest) with masks that disagree is caught there."""
    import shutil

    from click.testing import CliRunner
    from tar_edit import read_members, reseal, write_tar

    from latentcache.cli.main import cli
    from latentcache.errors import StoreCorruptError
    from latentcache.store import open_store

    copy = tmp_path / "copy"
    shutil.copytree(seg_store.path, copy)
    rel = next(iter(open_store(copy).wds_entries("train")))
    members = read_members(copy / rel)
    for i, (info, data) in enumerate(members):
        if info.name.endswith(".mask.npy.zst"):
            mask = np.load(io.BytesIO(numcodecs.Zstd().decode(data)))
            mask[0, 0] = 255 - mask[0, 0]
            members[i] = (info, _npy_zst(mask))
            break
    write_tar(copy / rel, members)
    reseal(copy, rel)
    result = CliRunner().invoke(cli, ["verify", str(copy)])
    assert result.exit_code == 1
    (damaged,) = [x for x in result.output.splitlines() if x.startswith("DAMAGED")]
    assert damaged.startswith(f"DAMAGED {rel}: ") and "differ at 1 of" in damaged
    with pytest.raises(StoreCorruptError, match="differ at 1 of"):
        list(open_store(copy).wds_samples("train"))


def test_a_mask_that_does_not_fit_its_image_fails_that_sample(tmp_path, tiny_codec):
    from seg_helpers import write_seg_dataset

    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    index = write_seg_dataset(tmp_path / "data", sizes=((75, 101), (53, 130), (90, 67)))
    Image.fromarray(np.zeros((10, 10), np.uint8), "L").save(tmp_path / "data/masks/im1.png")
    config = EncodeConfig(dataset="segtest", out=str(tmp_path / "s"), shard_size=3, workers=0)
    m = run_encode(config, tiny_codec, index=index).manifest
    assert m["totals"] == m["totals"] | {"indexed": 3, "stored": 2, "failed": 1}
    assert "mask masks/im1.png: 10x10, its image is 53x130" in m["failures"][0]["reason"]


def test_masks_are_bounded_by_max_pixels_as_their_images(tmp_path, tiny_codec):
    """--max-pixels refuses an image before its mask is read; a mask file declaring more
    pixels than its image (under the global bomb limit) is a recorded failure, not a read."""
    from seg_fixtures import png_declaring
    from seg_helpers import write_seg_dataset

    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    index = write_seg_dataset(tmp_path / "data", sizes=((75, 101), (53, 130), (90, 67)))
    (tmp_path / "data/masks/im1.png").write_bytes(png_declaring(9000, 9000))
    config = EncodeConfig(
        dataset="segtest", out=str(tmp_path / "s"), shard_size=3, workers=0, max_pixels=7000
    )
    m = run_encode(config, tiny_codec, index=index).manifest
    assert m["totals"] == m["totals"] | {"indexed": 3, "stored": 1, "failed": 2}
    reasons = {f["key"]: f["reason"] for f in m["failures"]}
    assert "101x75 = 7575 pixels > limit 7000" in reasons["im0"]  # the image, 75 x 101
    assert "mask masks/im1.png: 9000x9000, its image is 53x130" in reasons["im1"]


def test_push_then_pull_one_split_keeps_masks_and_verifies(seg_store, tmp_path):
    import uuid

    from latentcache.store import open_store
    from latentcache.store.transfer import TransferConfig, run_pull, run_push
    from latentcache.store.verify import verify_store

    url = f"memory://seg-{uuid.uuid4().hex}"
    run_push(TransferConfig(str(seg_store.path), url, progress=False))
    assert verify_store(open_store(url)).ok
    dest = tmp_path / "val-only"
    run_pull(TransferConfig(url, str(dest), splits=("val",), progress=False))
    copy = open_store(dest)
    assert copy.splits == ["val"] and verify_store(copy).ok
    for s in copy.wds_samples("val"):
        assert np.array_equal(s["mask"], position_mask(*s["info"]["image_size"]))
    got = copy.zarr_split("val").read(0, 2)
    for key, mask, (h, w) in zip(got["key"], got["mask"], got["image_size"], strict=True):
        assert np.array_equal(mask[:h, :w], position_mask(h, w)), key


@pytest.mark.parametrize(
    "change, says",
    [
        ({"shape": [4, 90, 1 << 20]}, "oversized array"),
        ({"data_type": "int32"}, "dtype int32"),
    ],
)
def test_a_hostile_zarr_mask_array_is_refused_before_reading(seg_store, tmp_path, change, says):
    import shutil

    from latentcache.errors import StoreCorruptError
    from latentcache.store import open_store

    copy = tmp_path / "copy"
    shutil.copytree(seg_store.path, copy)
    meta = copy / "zarr/train/mask/zarr.json"
    doc = json.loads(meta.read_text())
    doc |= change
    meta.write_text(json.dumps(doc))
    with pytest.raises(StoreCorruptError, match=says) as err:
        open_store(copy).zarr_split("train")
    assert "\n" not in str(err.value)

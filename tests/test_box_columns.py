"""Box targets in real Zarr v3 arrays (ragged through offsets) and WebDataset tars (a member
plain webdataset decodes); what comes back is checked as hostile input."""

from __future__ import annotations

import numpy as np
import pytest
import webdataset as wds
import zarr

from latentcache.datasets.boxes import RawBoxes, validate_boxes
from latentcache.errors import SampleError
from latentcache.tasks.box_columns import (
    boxes_member,
    pack_boxes,
    parse_boxes_member,
    unpack_boxes,
)

SIZES = [(40, 50), (30, 30), (60, 20), (40, 50)]


def _rows():
    def t(boxes, labels, crowd):
        raw = RawBoxes.from_lists(boxes, [c + 1 for c in labels], crowd)
        return validate_boxes(raw, (40, 50), [1, 2, 3])

    return [
        t([[1.5, 2, 30, 20], [0, 0, 50, 40]], [0, 2], [0, 1]),
        None,  # a hole (a failed sample)
        t(np.zeros((0, 4)), [], []),  # an image without boxes
        t([[10, 10, 12, 13]], [1], [0]),
    ]


def _zarr_round_trip(tmp_path, columns: dict) -> dict:
    group = zarr.open_group(tmp_path / "boxes.zarr", mode="w", zarr_format=3)
    for name, a in columns.items():
        arr = group.create_array(name, shape=a.shape, chunks=a.shape or (1,), dtype=a.dtype)
        arr[...] = a
    reopened = zarr.open_group(tmp_path / "boxes.zarr", mode="r")
    return {name: reopened[name][...] for name in columns}


def test_ragged_columns_round_trip_through_zarr(tmp_path):
    rows = _rows()
    columns = pack_boxes(rows)
    assert columns["box_offsets"].tolist() == [[0, 2], [2, 2], [2, 2], [2, 3]]
    assert {k: str(v.dtype) for k, v in columns.items()} == {
        "box_offsets": "int64", "boxes": "float32", "box_labels": "int32", "box_iscrowd": "uint8",
    }  # fmt: skip
    back = unpack_boxes(_zarr_round_trip(tmp_path, columns), SIZES, 3)
    for a, b in zip(rows, back, strict=True):
        if a is None:
            assert len(b) == 0
            continue
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert a.labels.tolist() == b.labels.tolist() and a.iscrowd.tolist() == b.iscrowd.tolist()


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda c: c["box_offsets"].__setitem__((3, 1), 99), "outside the 3 boxes"),
        (lambda c: c["box_offsets"].__setitem__((0, 0), -1), "outside"),
        (lambda c: c.__setitem__("box_offsets", c["box_offsets"].astype(np.int32)), "int64"),
        (lambda c: c.__setitem__("boxes", c["boxes"].astype(np.float64)), "float32"),
        (lambda c: c.__setitem__("box_labels", c["box_labels"][:2]), "disagree"),
        (lambda c: c["box_labels"].__setitem__(0, 7), "row 0: box 0 has category 7"),
        (lambda c: c["boxes"].__setitem__((2, 2), 500.0), "row 3: box 0 .* outside"),
        (lambda c: c["boxes"].__setitem__((2, 2), np.nan), "row 3: box 0 has a non-finite"),
    ],
)
def test_damaged_columns_are_refused(damage, reason):
    columns = pack_boxes(_rows())
    damage(columns)
    with pytest.raises(SampleError, match=reason):
        unpack_boxes(columns, SIZES, 3)


def test_webdataset_member_plain_webdataset_decodes(tmp_path):
    rows = _rows()
    tar = tmp_path / "train-000000.tar"
    with wds.TarWriter(str(tar)) as sink:
        for i in (0, 2, 3):
            sink.write({"__key__": f"k{i}", "boxes.json": boxes_member(rows[i])})
    samples = list(wds.WebDataset(str(tar), shardshuffle=False, empty_check=False).decode())
    assert [s["__key__"] for s in samples] == ["k0", "k2", "k3"]
    assert isinstance(samples[0]["boxes.json"], dict)  # the plain JSON decoder did it
    for i, s in zip((0, 2, 3), samples, strict=True):
        t = parse_boxes_member(s["boxes.json"], SIZES[i], 3)
        np.testing.assert_array_equal(t.boxes, rows[i].boxes)
        assert t.labels.tolist() == rows[i].labels.tolist()


def test_hostile_members_are_refused():
    with pytest.raises(SampleError, match="not JSON"):
        parse_boxes_member(b"{boxes", (40, 50), 3)
    with pytest.raises(SampleError, match="bytes, over"):
        parse_boxes_member(b" " * (5 << 20), (40, 50), 3)
    with pytest.raises(SampleError, match="outside"):
        parse_boxes_member(
            b'{"boxes": [[0, 0, 60, 5]], "labels": [0], "iscrowd": [0]}', (40, 50), 3
        )

"""The boxes' WebDataset member: written to a real tar, decoded by plain webdataset, and
checked as hostile input when parsed."""

from __future__ import annotations

import numpy as np
import pytest
import webdataset as wds

from latentcache.datasets.boxes import RawBoxes, validate_boxes
from latentcache.errors import SampleError
from latentcache.tasks.box_columns import boxes_member, parse_boxes_member

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

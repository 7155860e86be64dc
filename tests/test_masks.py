"""read_mask on real files: palette and grey PNGs, SBD .mat files, and files it must refuse."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from seg_fixtures import blob_mask, png_declaring, write_sbd_mat

from latentcache.datasets.masks import (
    check_mask_values,
    decode_mask,
    read_mask,
    voc_palette,
    write_palette_mask,
)
from latentcache.errors import SampleError


@pytest.fixture
def mask() -> np.ndarray:
    return blob_mask(37, 53, [15, 3, 20])  # odd size, 255 outlines


def test_palette_png_reads_as_indices_not_colours(tmp_path, mask):
    path = tmp_path / "m.png"
    write_palette_mask(path, mask)
    assert Image.open(path).mode == "P"
    out = read_mask(path)
    assert out.dtype == np.uint8 and out.shape == (37, 53)
    np.testing.assert_array_equal(out, mask)
    assert set(np.unique(out)) == {0, 3, 15, 20, 255}
    # what convert() would have given: colours (person is (192, 128, 128)), not class 15
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert tuple(rgb[mask == 15][0]) == tuple(voc_palette()[15]) != (15, 15, 15)


def test_grey_png_and_16_bit_png_read_as_is(tmp_path, mask):
    Image.fromarray(mask).save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "l.png"), mask)
    Image.fromarray(mask.astype(np.uint16)).save(tmp_path / "i16.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "i16.png"), mask)
    Image.fromarray(mask.astype(np.uint16) + 300).save(tmp_path / "big.png")
    with pytest.raises(SampleError, match=r"do not fit uint8"):
        read_mask(tmp_path / "big.png")


def test_sbd_mat_reads_the_segmentation(tmp_path, mask):
    for compress in (True, False):
        path = tmp_path / f"2008_000123-{compress}.mat"
        write_sbd_mat(path, mask, compress=compress)
        out = read_mask(path)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, mask)


def test_sbd_mat_same_as_torchvision_reads_it(tmp_path, mask):
    from scipy.io import loadmat

    path = tmp_path / "a.mat"
    write_sbd_mat(path, mask)
    theirs = np.asarray(loadmat(path)["GTcls"][0]["Segmentation"][0])  # torchvision's SBDataset
    np.testing.assert_array_equal(read_mask(path), theirs)


def test_rgb_png_is_refused_in_one_line(tmp_path, mask):
    Image.fromarray(voc_palette()[mask]).save(tmp_path / "rgb.png")
    with pytest.raises(SampleError, match=r"mode 'RGB' holds colours") as exc:
        read_mask(tmp_path / "rgb.png")
    assert "\n" not in str(exc.value)


def test_bombs_are_refused_before_decoding(tmp_path):
    with pytest.raises(SampleError, match=r"decompression bomb: 12000x12000"):
        decode_mask(png_declaring(12_000, 12_000), "bomb.png")
    with pytest.raises(SampleError, match=r"bomb.png: decompression bomb"):  # Pillow's own
        decode_mask(png_declaring(100_000, 100_000), "bomb.png")
    big = np.zeros((2000, 2000), dtype=np.uint8)  # 4 MB of zeros, a few kB compressed
    write_sbd_mat(tmp_path / "bomb.mat", big, compress=True)
    assert (tmp_path / "bomb.mat").stat().st_size < 100_000
    with pytest.raises(SampleError, match=r"decompression bomb: compressed \.mat"):
        read_mask(tmp_path / "bomb.mat", max_pixels=10_000)
    write_sbd_mat(tmp_path / "plain.mat", big, compress=False)
    with pytest.raises(SampleError, match=r"decompression bomb: 2000x2000"):
        read_mask(tmp_path / "plain.mat", max_pixels=10_000)


def test_a_mask_is_bounded_by_its_image(tmp_path):
    # declared 9000x9000 (under the global limit): refused from the header, nothing decoded
    with pytest.raises(SampleError, match=r"^mask m.png: 9000x9000, its image is 53x130$"):
        decode_mask(png_declaring(9000, 9000), "m.png", image_hw=(53, 130))
    big = np.zeros((2000, 2000), dtype=np.uint8)
    write_sbd_mat(tmp_path / "big.mat", big, compress=True)  # inflates past the image's pixels
    with pytest.raises(SampleError, match=r"decompression bomb: compressed \.mat"):
        read_mask(tmp_path / "big.mat", image_hw=(50, 50))
    write_sbd_mat(tmp_path / "ok.mat", big[:50, :40], compress=True)
    with pytest.raises(SampleError, match=r"^mask cls/ok.mat: 50x40, its image is 40x50$"):
        read_mask(tmp_path / "ok.mat", image_hw=(40, 50), name="cls/ok.mat")
    assert read_mask(tmp_path / "ok.mat", image_hw=(50, 40)).shape == (50, 40)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.png", b"", "empty file"),
        ("junk.png", b"not a png at all", "not an image Pillow can identify"),
        ("junk.mat", b"MATLAB 5.0 MAT-file" + b" " * 200, "not a MATLAB v5"),
        ("trunc.png", None, "cannot decode"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, mask, name, data, reason):
    if data is None:
        write_palette_mask(tmp_path / "full.png", mask)
        data = (tmp_path / "full.png").read_bytes()[:60]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(SampleError, match=reason) as exc:
        read_mask(tmp_path / name)
    assert "\n" not in str(exc.value) and name in str(exc.value)


def test_mat_without_gtcls_is_refused(tmp_path, mask):
    import scipy.io

    scipy.io.savemat(tmp_path / "other.mat", {"GTinst": {"Segmentation": mask}})
    with pytest.raises(SampleError, match="no GTcls struct"):
        read_mask(tmp_path / "other.mat")
    scipy.io.savemat(tmp_path / "float.mat", {"GTcls": {"Segmentation": mask.astype(float)}})
    with pytest.raises(SampleError, match="float64 values"):
        read_mask(tmp_path / "float.mat")


def test_missing_file_is_a_sample_error(tmp_path):
    with pytest.raises(SampleError, match="cannot read"):
        read_mask(tmp_path / "nope.png")


def test_check_mask_values(mask):
    check_mask_values(mask, 21)
    with pytest.raises(SampleError, match=r"values \[15, 20\]"):
        check_mask_values(mask, 10, "m.png")

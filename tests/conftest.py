"""Shared fixtures: real CC0 images (scikit-image's textures and photos) and a small real codec.

The codec is a real CompressAI ``ScaleHyperprior`` with small widths, seeded, its analysis
transform's last layer scaled up so that ``y_hat`` is not all zeros, and ``update(force=True)``d:
its bitstreams are real entropy-coded bytes that stock CompressAI decodes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")

TEXTURES = ("brick", "grass", "gravel")
TINY_N, TINY_M = 16, 24


def make_tiny_model(seed: int = 0, gain: float = 40.0):
    import torch
    from compressai.models import ScaleHyperprior

    torch.manual_seed(seed)
    model = ScaleHyperprior(TINY_N, TINY_M)
    with torch.no_grad():
        for layer in (model.g_a[-1], model.h_s[-2]):  # spread y and scales_hat like a trained codec
            layer.weight.mul_(gain)
            layer.bias.mul_(gain)
    model.update(force=True)
    return model.eval()


def checkpoint_spec(path: Path):
    """The CodecSpec that loads a latentcache codec checkpoint of the tiny codec."""
    from latentcache.codec.spec import CodecSpec

    return CodecSpec(quality=1, source="checkpoint", checkpoint=str(path))


def encode_with_tiny_checkpoint(root: Path, data_root: Path) -> tuple[Path, Path]:
    """Save the tiny codec as ``<root>/tiny.pt`` and encode ``data_root`` with it into
    ``<root>/store`` (Zarr, shards of 4): (checkpoint, store)."""
    from latentcache.codec.load import save_codec_checkpoint
    from latentcache.codec.spec import CodecSpec
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode

    ckpt = save_codec_checkpoint(root / "tiny.pt", make_tiny_model(), CodecSpec(quality=1))
    store = root / "store"
    run_encode(
        EncodeConfig(
            dataset="imagefolder", data_root=str(data_root), out=str(store),
            codec=checkpoint_spec(ckpt), shard_size=4, workers=0, formats=("zarr",),
        )
    )  # fmt: skip
    return ckpt, store


def write_texture_folder(
    root: Path, per_class: int = 6, size: int = 96, layout: str = "flat"
) -> Path:
    """``<root>/<class>/<class>_<i>.png`` crops of scikit-image's CC0 textures (or split layout)."""
    from PIL import Image
    from skimage import data

    for cls in TEXTURES:
        img = getattr(data, cls)()  # (512, 512) uint8 grayscale
        for i in range(per_class):
            y, x = (i * 61) % (img.shape[0] - size), (i * 97) % (img.shape[1] - size)
            crop = np.stack([img[y : y + size, x : x + size]] * 3, axis=-1)
            split = ("train", "train", "test")[i % 3] if layout == "split" else None
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(crop).save(folder / f"{cls}_{i}.png")
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, and do not fight a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_codec(tiny_model):
    from latentcache.codec.load import codec_from_model
    from latentcache.codec.spec import CodecSpec

    return codec_from_model(tiny_model, CodecSpec(quality=1))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    """The tiny codec as a plain CompressAI state dict (what compressai.utils.update_model writes)."""
    import torch

    path = tmp_path_factory.mktemp("codec") / "tiny.pth"
    torch.save(tiny_model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def texture_root(tmp_path_factory) -> Path:
    return write_texture_folder(tmp_path_factory.mktemp("textures"), layout="split")


@pytest.fixture(scope="session")
def photo_images() -> list[np.ndarray]:
    """Real CC0 photos of different sizes and contents, as RGB uint8 arrays."""
    from skimage import data

    return [data.astronaut()[:200, :232], data.coffee()[:150, :200], data.chelsea()[:128, :192]]


@pytest.fixture(scope="session")
def texture_store(tmp_path_factory, texture_root, tiny_codec):
    """A finished store (both formats) of the texture folder, encoded in-process."""
    from latentcache.config import EncodeConfig
    from latentcache.pipeline.encode import run_encode
    from latentcache.store import open_store

    out = tmp_path_factory.mktemp("stores") / "textures"
    config = EncodeConfig(
        dataset="imagefolder", data_root=str(texture_root), out=str(out), shard_size=4, workers=0
    )
    run_encode(config, tiny_codec)
    return open_store(out)


# ids of the VOC-layout fixture: VOC2012 train A B C, val D E; SBD train B D F G, val H C
VOC_IDS = tuple(f"2008_{i:06d}" for i in range(1, 9))


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory) -> Path:
    """VOC2012 + SBD in their tar layouts (tests/seg_fixtures.py): JPEGs of odd sizes, palette
    PNG masks with 255 outlines, SBD .mat masks; train_aug = 6 images, val = 2."""
    from seg_fixtures import write_voc_tree

    a, b, c, d, e, f, g, h = VOC_IDS
    root = tmp_path_factory.mktemp("voc")
    write_voc_tree(root, [a, b, c], [d, e], sbd_train=[b, d, f, g], sbd_val=[h, c])
    return root


@pytest.fixture(scope="session")
def segfolder_root(tmp_path_factory) -> Path:
    """A segmentation folder: classes.txt (4 classes), train 6 / val 2 JPEGs with palette masks."""
    from seg_fixtures import write_segfolder

    root = tmp_path_factory.mktemp("segfolder")
    write_segfolder(root, ["background", "sky", "grass", "brick"], {"train": 6, "val": 2})
    return root

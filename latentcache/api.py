"""The Python API: everything the CLI does, from a notebook.

>>> from latentcache import api
>>> store = api.encode("imagefolder", "stores/photos-q3", data_root="~/photos", quality=3, checkpoint="q3.pt")
>>> print(api.card(store.path))
>>> zs = store.zarr_split("train")                   # random access to one split (Zarr)
>>> sample = zs[0]                                   # dict of numpy arrays
>>> y_hat, scales_hat = api.as_tensors(sample)       # torch tensors (M, h, w)
>>> for start, stop in zs.blocks():                  # a training loop of your own
...     batch = zs.read(start, stop, dtype="stored") # y_hat int16, scales_hat uint8 index

``ZarrSplit.read(start, stop, dtype=...)`` reads through the training loader's shard reader
(crc32c-checked chunks decompressed straight into preallocated arrays), at the loader's
speed. ``dtype="stored"``: the stored dtypes (``y_hat`` int16; ``scales_hat`` as the scale
index uint8, float16 or float32; a z_hat store's ``z_hat`` int16 under its own name).
``dtype="float"`` (default): ``scales_hat`` as float32 sigma-hat (``scale_table[index]``, or
``h_s(z_hat)`` for a store opened with ``codec=``). Every sample dict has key, label (int64),
bpp, latent_shape (h, w); rows of failed samples (holes) are dropped. ``store.task`` and
``store.inputs`` say what the labels are and which arrays a model receives.
"""

from __future__ import annotations

import os

from latentcache.codec.spec import CodecSpec
from latentcache.config import EncodeConfig
from latentcache.store.reader import LatentStore, open_store

__all__ = [
    "download",
    "encode",
    "open_store",
    "card",
    "verify",
    "as_tensors",
    "EncodeConfig",
    "CodecSpec",
]


def download(dataset: str, data_root: str | os.PathLike | None = None, **options):
    """Fetch, check and unpack ``dataset`` (``options``: DownloadConfig fields); its result."""
    from latentcache.download import DownloadConfig, run_download

    root = str(data_root) if data_root is not None else None
    return run_download(DownloadConfig(dataset, root, **options))


def encode(
    dataset: str,
    out: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    quality: int | None = None,
    arch: str | None = None,
    codec_source: str = "zoo",
    checkpoint: str | os.PathLike | None = None,
    model=None,
    **options,
) -> LatentStore:
    """Encode ``dataset`` into ``out`` and open the result. ``options`` are EncodeConfig fields.

    ``model``: an in-memory CompressAI model to use instead of loading weights.
    """
    from latentcache.pipeline.encode import run_encode

    source = "model" if model is not None else "checkpoint" if checkpoint else codec_source
    spec = CodecSpec(
        arch=arch,
        quality=quality,
        source=source,
        checkpoint=str(checkpoint) if source == "checkpoint" else None,
    )
    config = EncodeConfig(
        dataset=dataset,
        out=str(out),
        data_root=str(data_root) if data_root else None,
        codec=spec,
        **options,
    )
    codec = None
    if model is not None:
        from latentcache.codec.load import codec_from_model

        codec = codec_from_model(model, spec)
    run_encode(config, codec)
    return open_store(out, codec)


def card(path: str | os.PathLike) -> str:
    """The dataset card ``latentcache inspect`` prints (``path``: a folder or a URL)."""
    from latentcache.store.card import format_card

    return format_card(open_store(path).manifest, str(path))


def verify(path: str | os.PathLike, redecode: bool = False, codec=None):
    """Check a store against its manifest; returns a VerifyReport (``.ok``, ``.problems``)."""
    from latentcache.store.verify import verify_store

    return verify_store(open_store(path), redecode=redecode, codec=codec)


def as_tensors(sample: dict):
    """(y_hat, scales_hat) of one sample as float32 torch tensors."""
    import torch

    return torch.from_numpy(sample["y_hat"].astype("float32")), torch.from_numpy(
        sample["scales_hat"]
    )

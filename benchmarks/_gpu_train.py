"""JPEG bytes for decoding on the training device (``train_speed.py``'s ResNet-50 input):
worker processes read the files, the device decodes them (torchvision.io.decode_jpeg)."""

from __future__ import annotations

__all__ = ["JpegBytes", "collate_bytes"]


class JpegBytes:
    """(file bytes, label) of the JPEGs, cycled: the GPU decodes them."""

    def __init__(self, files) -> None:
        self.files = files

    def __len__(self) -> int:
        return 10**6

    def __getitem__(self, i: int):
        from torchvision.io import read_file

        path, label = self.files[i % len(self.files)]
        return read_file(str(path)), label


def collate_bytes(samples):
    """One flat uint8 tensor of the batch's files, their lengths, their labels: a batch
    crosses from a worker as one shared-memory tensor, not one per file (a file descriptor
    each, which runs out with many workers)."""
    import torch

    return (
        torch.cat([s[0] for s in samples]),
        [len(s[0]) for s in samples],
        [s[1] for s in samples],
    )

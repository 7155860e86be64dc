"""What makes a training step fast on a GPU, behind train options with CPU-safe defaults.

::

    --compile MODE       torch.compile of the step's model (off by default: its first steps
                         take minutes). On CUDA, "reduce-overhead" replays the step as CUDA
                         graphs: training batches always have the same shape (whole batches
                         per rank), so the graph is recorded once; "max-autotune-no-cudagraphs"
                         tunes kernels without graphs. On the CPU "default" works (inductor, a
                         C++ compiler needed); the graph modes have no effect there.
    --cudnn-benchmark    cuDNN picks the fastest convolution for each shape (CUDA only; on by
                         default: the shapes of a run never change)
    --fused-optimizer    the optimizer's update as one fused kernel (``fused=True`` for SGD and
                         AdamW; CUDA only, on by default; ignored on the CPU)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["COMPILE_MODES", "compile_model", "cudnn_benchmark", "use_fused"]

logger = logging.getLogger(__name__)

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """``torch.compile(model, mode=mode)``, or ``model`` itself for "off". The compiled
    module shares ``model``'s parameters; checkpoints are written from ``model``."""
    if mode == "off":
        return model
    logger.info("torch.compile(mode=%r): the first steps compile", mode)
    compiled = torch.compile(model, mode=mode)
    compiled.inputs = getattr(model, "inputs", None)
    return compiled


@contextlib.contextmanager
def cudnn_benchmark(device: torch.device, enabled: bool) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark`` set for the run on CUDA, restored after."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def use_fused(params: list[torch.Tensor], enabled: bool) -> bool:
    """Whether the optimizer runs fused: asked for, and every parameter on CUDA."""
    return enabled and bool(params) and all(p.is_cuda for p in params)

"""The fine-tuning objective and which parameters each mode trains.

::

    x (B, 3, Hp, Wp) ─► g_a (AMP) ─► y ─► h_a(|y|) ─► z                       (float32 from here)
      rate branch (noise):       z~ = z + U   ─► p(z~)        y~ = y + U ─► p(y~ | sigma-hat)
      classifier branch (STE):   z-hat = round(z - m) + m ─► h_s ─► sigma-hat
                                 sigma-hat ─► scale_table[index]   (STE; "index" stores only)
                                 y-hat = round(y)                   (STE)
      ─► augment(normalise(y-hat, sigma-hat)) ─► classifier ─► CE
    loss = CE + beta * R + gamma * lambda * 255^2 * MSE(g_s(y-hat), x)
    R = (-sum log2 p(y~|sigma-hat) - sum log2 p(z~)) / pixels

Straight-through rounding makes the classifier see in training exactly the ``y_hat`` and
``scales_hat`` that the entropy decoder gives back from the bytes at test time; the uniform
noise of Ballé et al. stays in the rate term only.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from latentcache.codec.latents import build_indexes
from latentcache.errors import ConfigError

__all__ = [
    "CODEC_PARTS",
    "CodecOutput",
    "LossTerms",
    "codec_forward",
    "compute_loss",
    "eval_forward",
    "codec_parameters",
    "freeze",
    "straight_through",
]

CODEC_PARTS = ("g_a", "h_a", "h_s", "entropy_bottleneck")  # C-FT; g_s only when gamma > 0
SUPPORTED_ARCHS = ("ScaleHyperprior",)


@dataclass
class CodecOutput:
    inputs: dict[str, torch.Tensor]  # "y_hat", "scales_hat": what the classifier sees
    bpp: torch.Tensor  # likelihood rate per (padded) pixel, scalar
    x_hat: torch.Tensor | None  # g_s(y_hat) when the distortion term is on


@dataclass
class LossTerms:
    loss: torch.Tensor
    ce: torch.Tensor | None
    bpp: torch.Tensor
    mse: torch.Tensor | None
    logits: torch.Tensor | None


def check_architecture(model: nn.Module) -> None:
    name = type(model).__name__
    if name not in SUPPORTED_ARCHS:
        raise ConfigError(
            f"finetune supports {list(SUPPORTED_ARCHS)} (bmshj2018-hyperprior), not {name}: "
            "its objective feeds the classifier y_hat and sigma-hat = h_s(z_hat), which other "
            "architectures do not decode that way (no hyperprior, means, or a context model)"
        )


def straight_through(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, the identity's gradient in the backward pass."""
    return x + (value - x).detach()


def _z_hat(eb, z: torch.Tensor) -> torch.Tensor:
    """round(z - median) + median, as the entropy bottleneck's compress/decompress give it."""
    medians = eb._get_medians().detach().reshape(1, -1, *([1] * (z.dim() - 2)))
    return straight_through(z, torch.round(z - medians) + medians)


def _table_scales(gc, scales_hat: torch.Tensor) -> torch.Tensor:
    """scale_table[index]: what an "index" store gives back for these scales (STE)."""
    index = build_indexes(gc, scales_hat.detach()).long()
    return straight_through(scales_hat, gc.scale_table.to(scales_hat)[index])


def codec_forward(
    model: nn.Module, x: torch.Tensor, scales_repr: str, with_x_hat: bool, amp=nullcontext
) -> CodecOutput:
    """One pass of the codec for the objective above (``x`` padded to /64, in [0, 1])."""
    with amp():
        y = model.g_a(x)
    y = y.float()  # (B, M, Hp/16, Wp/16)
    z = model.h_a(torch.abs(y))  # (B, N, Hp/64, Wp/64)
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional
    _, z_likelihoods = eb(z, training=True)
    scales_hat = model.h_s(_z_hat(eb, z))
    _, y_likelihoods = gc(y, scales_hat, training=True)
    pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    bits = -torch.log2(y_likelihoods).sum() - torch.log2(z_likelihoods).sum()
    y_hat = straight_through(y, torch.round(y))
    scales = _table_scales(gc, scales_hat) if scales_repr == "index" else scales_hat
    x_hat = None
    if with_x_hat:
        with amp():
            x_hat = model.g_s(y_hat).float()
    return CodecOutput({"y_hat": y_hat, "scales_hat": scales}, bits / pixels, x_hat)


@torch.no_grad()
def eval_forward(
    model: nn.Module, x: torch.Tensor, scales_repr: str, amp=nullcontext
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Test-time latents (rounded, no noise) and each image's -log2 likelihood in bits."""
    with amp():
        y = model.g_a(x)
    y = y.float()
    z = model.h_a(torch.abs(y))
    eb, gc = model.entropy_bottleneck, model.gaussian_conditional
    z_hat, z_likelihoods = eb(z, training=False)
    scales_hat = model.h_s(z_hat)
    _, y_likelihoods = gc(y, scales_hat, training=False)
    bits = -torch.log2(y_likelihoods).flatten(1).sum(1) - torch.log2(z_likelihoods).flatten(1).sum(
        1
    )
    scales = _table_scales(gc, scales_hat) if scales_repr == "index" else scales_hat
    return {"y_hat": torch.round(y), "scales_hat": scales}, bits


def compute_loss(
    out: CodecOutput,
    x: torch.Tensor,
    labels: torch.Tensor,
    classifier: nn.Module | None,
    transform,
    generator: torch.Generator | None,
    weights: tuple[float, float, float],
    amp=nullcontext,
) -> LossTerms:
    """CE(classifier(augment(normalise(y_hat, sigma_hat)))) + beta*R + gamma*lambda*255^2*MSE.

    ``weights`` = (beta, gamma, lambda); no classifier: no CE term.
    """
    beta, gamma, lmbda = weights
    loss, ce, mse, logits = beta * out.bpp, None, None, None
    if classifier is not None:
        xs = transform(out.inputs, classifier.training, generator)
        with amp():
            logits = classifier(*xs).float()
        ce = F.cross_entropy(logits, labels)
        loss = loss + ce
    if out.x_hat is not None:
        mse = F.mse_loss(out.x_hat, x)
        loss = loss + gamma * lmbda * 255**2 * mse
    return LossTerms(loss, ce, out.bpp, mse, logits)


def codec_parameters(model: nn.Module, train_g_s: bool) -> tuple[list, list]:
    """(network parameters, entropy-bottleneck quantiles) that a codec mode trains."""
    parts = CODEC_PARTS + (("g_s",) if train_g_s else ())
    named = [(n, p) for n, p in model.named_parameters() if n.split(".")[0] in parts]
    net = [p for n, p in named if not n.endswith(".quantiles")]
    aux = [p for n, p in named if n.endswith(".quantiles")]
    return net, aux


def freeze(module: nn.Module, trainable: list | None = None) -> None:
    """requires_grad only on ``trainable`` (all parameters when None)."""
    keep = None if trainable is None else {id(p) for p in trainable}
    for p in module.parameters():
        p.requires_grad_(keep is None or id(p) in keep)

"""Reading codec weight files, and checking that they fit an architecture, in one-line errors.

::

    file ─► magic bytes (torch.save zip | legacy) ─► torch.load(weights_only=True) ─► dict
      └► unwrap: latentcache checkpoint {"format", "state_dict", arch, quality, ...}
                 | CompressAI training script {"state_dict" | "network": ...} | plain state dict
      └► CompressAI's key renames ─► check_fits(arch): widths (N from g_a.0, M from g_a.6;
                 cheng2020: N = M from g_a.0.conv1),
                 keys, shapes, entropy-coder tables (filled by update()) ─► (N, M)

Every failure is a :class:`~latentcache.errors.CodecFileError` naming the file and the reason.
"""

from __future__ import annotations

import functools
import logging
import pickle
import zipfile
from pathlib import Path

import torch

from latentcache.codec.spec import architectures
from latentcache.errors import CodecFileError, WeightsNotFoundError

__all__ = [
    "CHECKPOINT_FORMAT",
    "read_weights",
    "check_fits",
    "widths_of",
    "table_keys",
    "detect_arch",
    "TABLE_KEYS",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "latentcache-codec"
MAX_LISTED = 4  # key names quoted in one message
MAX_WEIGHTS_BYTES = 2 << 30  # CompressAI's largest zoo file is under 100 MB
_TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")
# The entropy coder's tables: empty until update() fills them from the trained weights (a
# factorized prior has no gaussian_conditional: its state dict has the first three only).
TABLE_KEYS = tuple(
    [f"entropy_bottleneck.{b}" for b in _TABLE_BUFFERS]
    + [f"gaussian_conditional.{b}" for b in _TABLE_BUFFERS]
    + ["gaussian_conditional.scale_table"]
)
# Where CompressAI's from_state_dict reads the widths: (N key, M key); cheng2020 has N = M.
_WIDTH_KEYS = (("g_a.0.weight", "g_a.6.weight"), ("g_a.0.conv1.weight", "g_a.0.conv1.weight"))
UPDATE_HINT = (
    "run model.update(force=True) and save its state_dict again "
    "(CompressAI's `python -m compressai.utils.update_model` does), "
    "or save it with `latentcache codec train`"
)


def _few(names) -> str:
    names = list(names)
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more


def _load_torch_file(path: Path):
    """torch.load with weights_only=True; a file that is not torch.save's output says so."""
    if not path.is_file():
        raise WeightsNotFoundError(f"codec checkpoint not found: {path}")
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise CodecFileError(
            f"codec checkpoint {path}: {size} bytes, over the {MAX_WEIGHTS_BYTES} bytes a codec "
            f"weights file may have"
        )
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head == b"PK\x03\x04" or head[:2] == b"\x80\x02"):  # zip archive | legacy pickle
        raise CodecFileError(
            f"codec checkpoint {path}: not a PyTorch file (torch.save writes a zip archive; "
            f"this file starts with {head!r})"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CodecFileError(
            f"codec checkpoint {path}: holds Python objects that a safe load "
            f"(torch.load weights_only=True) refuses: {first[:200]}"
        ) from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CodecFileError(
            f"codec checkpoint {path}: damaged or truncated PyTorch file ({first[:200]})"
        ) from None


def _as_state_dict(path: Path, obj) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict):
        raise CodecFileError(
            f"codec checkpoint {path}: holds a {type(obj).__name__}, not a state dict"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CodecFileError(
            f"codec checkpoint {path}: not a state dict (names -> tensors): "
            f"{bad[0]!r} holds a value of type {type(obj[bad[0]]).__name__}"
        )
    if not obj:
        raise CodecFileError(f"codec checkpoint {path}: an empty state dict")
    return obj


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, metadata) of a latentcache checkpoint, a CompressAI training checkpoint
    (``{"state_dict": ...}`` or ``{"network": ...}``) or a plain CompressAI state dict.
    Metadata is empty unless the file is a latentcache checkpoint."""
    from compressai.zoo.pretrained import load_pretrained as rename_keys

    path = Path(path)
    obj = _load_torch_file(path)
    meta: dict = {}
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        obj = obj.get("state_dict")
    elif isinstance(obj, dict):
        for wrapper in ("network", "state_dict"):  # CompressAI training scripts' layouts
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    return rename_keys(_as_state_dict(path, obj)), meta


def widths_of(state_dict: dict[str, torch.Tensor]) -> tuple[int, int] | None:
    """(N, M) as CompressAI's ``from_state_dict`` reads them: g_a's first and last layer, or
    cheng2020's first residual block (N = M)."""
    for n_key, m_key in _WIDTH_KEYS:
        a, b = state_dict.get(n_key), state_dict.get(m_key)
        if a is not None and b is not None and a.dim() == 4 and b.dim() == 4:
            return int(a.shape[0]), int(b.shape[0])
    return None


@functools.lru_cache(maxsize=32)
def _reference(arch: str, widths: tuple[int, int]) -> dict[str, torch.Size]:
    from compressai.zoo.image import model_architectures

    cls = model_architectures[arch]
    if widths[0] != widths[1] and "M" not in _init_args(cls):
        return {}  # cheng2020 is built from N alone: other widths fit nothing
    model = cls(widths[0]) if "M" not in _init_args(cls) else cls(*widths)
    return {k: v.shape for k, v in model.state_dict().items()}


def _init_args(cls) -> tuple[str, ...]:
    import inspect

    return tuple(inspect.signature(cls.__init__).parameters)


def table_keys(arch: str, widths: tuple[int, int]) -> list[str]:
    """The entropy-coder table keys ``arch`` has."""
    return [k for k in TABLE_KEYS if k in _reference(arch, widths)]


def _problems(arch: str, sd: dict, widths: tuple[int, int]) -> tuple[str, list]:
    """('', []) if ``sd`` fits ``arch`` at ``widths``, else the kind of misfit and its keys."""
    from compressai.models.utils import remap_old_keys

    ref = _reference(arch, widths)
    if not ref:
        return "shapes", []
    sd = remap_old_keys("entropy_bottleneck", sd)
    missing = [k for k in ref if k not in sd and k not in TABLE_KEYS]
    if missing:
        return "missing", missing
    unexpected = [k for k in sd if k not in ref]
    if unexpected:
        return "unexpected", unexpected
    shapes = [
        (k, tuple(sd[k].shape), tuple(s))
        for k, s in ref.items()
        if k not in TABLE_KEYS and tuple(sd[k].shape) != tuple(s)
    ]
    return ("shapes", shapes) if shapes else ("", [])


def _other_fit(arch: str, sd: dict, widths: tuple[int, int]) -> str:
    fits = [a for a in architectures() if a != arch and not _problems(a, sd, widths)[0]]
    return f" (the weights fit {fits[0]}: pass --arch {fits[0]})" if fits else ""


def detect_arch(sd: dict[str, torch.Tensor]) -> str | None:
    """The zoo architecture whose keys and shapes ``sd`` has (the first, in the zoo's order)."""
    widths = widths_of(sd)
    if widths is None:
        return None
    return next((a for a in architectures() if not _problems(a, sd, widths)[0]), None)


def check_fits(path: str | Path, arch: str, sd: dict[str, torch.Tensor]) -> tuple[int, int]:
    """The widths (N, M) of ``sd`` if it is a complete, entropy-coding ``arch``; else one line."""
    widths = widths_of(sd)
    where = f"codec checkpoint {path}"
    if widths is None:
        need = [k for k in ("g_a.0.weight", "g_a.6.weight") if k not in sd]
        raise CodecFileError(
            f"{where}: missing keys {_few(need or ['g_a.0.weight', 'g_a.6.weight'])}: "
            f"not a {arch} state dict (it has {_few(sorted(sd))})"
        )
    n, m = widths
    kind, keys = _problems(arch, sd, widths)
    if kind == "missing":
        raise CodecFileError(
            f"{where}: missing {len(keys)} keys of {arch}: {_few(keys)}"
            + _other_fit(arch, sd, widths)
        )
    if kind == "unexpected":
        raise CodecFileError(
            f"{where}: {len(keys)} keys that {arch} does not have: {_few(keys)}"
            + _other_fit(arch, sd, widths)
        )
    if kind == "shapes" and not keys:
        raise CodecFileError(
            f"{where}: {arch} has N = M, and these weights have N={n}, M={m}"
            + _other_fit(arch, sd, widths)
        )
    if kind == "shapes":
        k, found, expected = keys[0]
        more = f" ({len(keys) - 1} more tensors differ)" if len(keys) > 1 else ""
        raise CodecFileError(
            f"{where}: shapes don't fit {arch}: the weights' widths are N={n}, M={m} "
            f"(g_a.0, g_a.6), and {k} is {found} where {arch} with N={n}, M={m} expects "
            f"{expected}{more}" + _other_fit(arch, sd, widths)
        )
    empty = [k for k in table_keys(arch, widths) if k not in sd or sd[k].numel() == 0]
    if empty:
        raise CodecFileError(
            f"{where}: the entropy coder's tables are missing ({_few(empty)}), so it cannot "
            f"code bytes: {UPDATE_HINT}"
        )
    return widths

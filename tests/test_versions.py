"""The dependency bounds in pyproject.toml hold here, and CompressAI still has the private
entropy-model parts codec/latents.py relies on (a CompressAI upgrade that drops one fails here
first, not deep inside an encode)."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _requirements() -> list[Requirement]:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return [Requirement(d) for d in deps]


@pytest.mark.parametrize("req", _requirements(), ids=lambda r: r.name)
def test_installed_versions_meet_the_bounds(req):
    installed = version(req.name)
    assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} !{req}"


def test_compressai_private_parts_used_by_latents_exist():
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional
    from compressai.models.utils import remap_old_keys  # noqa: F401 (codec/weights.py)

    eb, gc = EntropyBottleneck(4), GaussianConditional(None)
    for em in (eb, gc):
        for name in ("_quantized_cdf", "_offset", "_cdf_length", "entropy_coder"):
            assert hasattr(em, name), name
        assert callable(em.entropy_coder.encode_with_indexes)
        assert callable(em.entropy_coder.decode_with_indexes)
    for name in ("_get_medians", "_extend_ndims", "_build_indexes", "quantize", "dequantize"):
        assert callable(getattr(eb, name)), name
    codec_dir = Path(__import__("latentcache.codec.latents").codec.latents.__file__).parent
    source = "".join(
        (codec_dir / f"{m}.py").read_text()
        for m in ("latents", "entropy", "factorized", "autoregressive")
    )
    used = set(re.findall(r"\b(?:eb|em|gc)\.(_[a-z_]+)", source))
    # the autoregressive codecs run CompressAI's own serial coder (codec/autoregressive.py)
    import inspect

    from compressai.models import JointAutoregressiveHierarchicalPriors as AR

    for name in ("_compress_ar", "_decompress_ar"):
        params = list(inspect.signature(getattr(AR, name)).parameters)[-5:]
        assert params == ["params", "height", "width", "kernel_size", "padding"], (name, params)
    assert used <= {
        "_quantized_cdf",
        "_offset",
        "_cdf_length",
        "_get_medians",
        "_extend_ndims",
        "_build_indexes",
    }, used

"""A built wheel, installed into a fresh environment, has every split file and the demo index.

The wheel is built from a copy of the source tree (``pip wheel --no-deps --no-build-isolation``),
installed with ``--no-deps`` into a new venv whose site-packages points (one ``.pth`` line) at
the running interpreter's site-packages for torch, compressai and the rest, so nothing is
downloaded. That install then encodes ``rsscn7`` (a small RSSCN7-shaped folder of real photos,
named as the committed split lists name them) and ``demo`` from a folder outside the repository,
without PYTHONPATH: the code, the split files and the demo index all come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE")

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "data_manifests")  # not a stale copy
    shutil.copytree(REPO / "latentcache", src / "latentcache", ignore=ignore)
    shutil.copytree(REPO / "data_manifests", src / "data_manifests")
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, src], cwd=tmp)
    return next(wheels.glob("latentcache-*.whl"))


def _fresh_env(tmp: Path, wheel: Path) -> Path:
    """A venv that sees the running interpreter's packages but has its own latentcache."""
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp)
    deps = {sysconfig.get_path("purelib"), *site.getsitepackages()}
    Path(purelib.stdout.strip(), "shared-deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python]
    _run([*pip, "install", "--no-deps", "-q", wheel], cwd=tmp)
    return venv


def _rsscn7_folder(root: Path, per_split: int = 1) -> int:
    """Real 400x400 photo crops named as data_manifests/rsscn7/splits.json names them."""
    from PIL import Image
    from skimage import data

    splits = json.loads((REPO / "data_manifests/rsscn7/splits.json").read_text())["splits"]
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    n = 0
    for _split, paths in sorted(splits.items()):
        taken: dict[str, int] = {}
        for rel in paths:
            cls = rel.split("/")[0]
            if taken.get(cls, 0) >= per_split:
                continue
            taken[cls] = taken.get(cls, 0) + 1
            img = photos[n % len(photos)]
            y, x = (n * 7) % (img.shape[0] - 256), (n * 13) % (img.shape[1] - 256)
            crop = np.asarray(Image.fromarray(img[y : y + 256, x : x + 256]).resize((400, 400)))
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(crop).save(root / rel, quality=90)
            n += 1
    return n


def test_wheel_install_encodes_rsscn7_and_demo(tmp_path, tiny_checkpoint):
    wheel = _build_wheel(tmp_path)
    venv = _fresh_env(tmp_path, wheel)
    work = tmp_path / "elsewhere"  # outside the repository
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LATENTCACHE_MANIFESTS")}
    python = venv / "bin" / "python"

    where = _run([python, "-c", "import latentcache; print(latentcache.__file__)"], work, env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    latentcache = [venv / "bin" / "latentcache"]

    n = _rsscn7_folder(work / "rsscn7")
    codec = ["--checkpoint", tiny_checkpoint, "--workers", "0", "--format", "zarr"]
    args = ["encode", "-d", "rsscn7", "--data-root", work / "rsscn7", "--out", "rs", *codec]
    _run([*latentcache, *args], work, env)
    m = json.loads((work / "rs" / "manifest.json").read_text())
    assert m["totals"]["stored"] == n == 21 and m["dataset"]["num_classes"] == 7
    assert sorted(m["splits"]) == ["test", "train", "validate"]

    args = ["encode", "-d", "demo", "--data-root", work / "demo", "--out", "dm", *codec]
    _run([*latentcache, *args], work, env)
    m = json.loads((work / "dm" / "manifest.json").read_text())
    index = json.loads((REPO / "data_manifests/demo/index.json").read_text())
    assert m["totals"]["stored"] == len(index["patches"]) and m["totals"]["failed"] == 0

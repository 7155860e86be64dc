"""One image lister for datasets and codec training; the codec layer imports nothing from
pipeline/ (image loading lives in latentcache.images, shared by both)."""

from __future__ import annotations

import ast
from pathlib import Path

import latentcache

PACKAGE = Path(latentcache.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_codec_layer_does_not_import_pipeline():
    for path in sorted((PACKAGE / "codec").glob("*.py")):
        bad = {m for m in _imports(path) if m.startswith("latentcache.pipeline")}
        assert not bad, f"{path.name} imports {bad}"


def test_codec_training_and_datasets_list_the_same_images(tmp_path):
    from latentcache.codec.train import list_image_files
    from latentcache.datasets.imagefolder import list_images

    for rel in ("a/x.PNG", "a/y.jpg", "b/z.gif", "a/.hidden.png", ".cache/w.png", "a/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    expected = [tmp_path / "a/x.PNG", tmp_path / "a/y.jpg", tmp_path / "b/z.gif"]
    assert list_images(tmp_path) == list_image_files(tmp_path) == expected

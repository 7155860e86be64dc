"""One image lister for datasets and codec training; the codec layer imports nothing from
pipeline/ (image loading lives in latentcache.images, shared by both)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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


def _check_structure():
    import importlib.util

    path = PACKAGE.parent / "scripts" / "check_structure.py"
    spec = importlib.util.spec_from_file_location("check_structure", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_module_over_400_lines():
    check = _check_structure()
    assert check.long_modules(PACKAGE) == {}


def test_no_import_cycles_even_through_function_level_imports():
    check = _check_structure()
    graph = check.import_graph(PACKAGE)
    assert check.find_cycles(graph) == []
    # the check sees imports inside functions, not only at module level
    assert "latentcache.codec.load" in graph["latentcache.codec.train"]


def test_the_structure_check_finds_a_lazy_cycle_and_a_long_module(tmp_path):
    check = _check_structure()
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import g\n" + "x = 1\n" * 400)
    assert check.find_cycles(check.import_graph(pkg)) == [["pkg.a", "pkg.sub.b"]]
    assert check.long_modules(pkg) == {"pkg/sub/b.py": 402}
    assert check.main([str(pkg)]) == 1


def test_the_structure_check_runs_as_a_script():
    import subprocess
    import sys

    script = PACKAGE.parent / "scripts" / "check_structure.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert "no import cycles" in done.stdout


@pytest.mark.parametrize("first", ["latentcache.tasks", "latentcache.store", "latentcache.train"])
def test_each_package_imports_first_in_a_fresh_interpreter(first):
    """Package-level cycles the graph check cannot see (an __init__ that imports a module
    which imports back into a package still initialising) fail here."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", f"import {first}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

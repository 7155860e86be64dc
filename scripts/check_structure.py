"""Check the package's structure: no module over MAX_LINES lines and no import cycles.

    python scripts/check_structure.py [PACKAGE_DIR]

Every import counts, at module level or inside a function (a lazy import still ties two
modules together). ``from latentcache.a import b`` is an edge to ``latentcache.a.b`` when
that is a module, else to ``latentcache.a``; the implicit import of parent packages is not
an edge. Prints one line per problem and exits 1 if there is any, else prints a summary.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

__all__ = ["MAX_LINES", "find_cycles", "import_graph", "long_modules", "main"]

MAX_LINES = 400
DEFAULT_PACKAGE = Path(__file__).resolve().parent.parent / "latentcache"


def _module_names(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``package``."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module an ImportFrom names, resolving relative levels."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(path: Path, module: str, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``module`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {name for name in found if name in modules and name != module}


def import_graph(package: Path = DEFAULT_PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports (every import, also inside functions)."""
    modules = _module_names(package)
    return {name: _targets(path, name, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: each strongly connected component with more than one module
    (Tarjan's algorithm), as a sorted list of module names."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def long_modules(package: Path = DEFAULT_PACKAGE, limit: int = MAX_LINES) -> dict[str, int]:
    """Module file (relative to the package's parent) -> line count, for those over limit."""
    counts = {}
    for path in sorted(package.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        if lines > limit:
            counts[str(path.relative_to(package.parent))] = lines
    return counts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    package = Path(args[0]).resolve() if args else DEFAULT_PACKAGE
    long = long_modules(package)
    cycles = find_cycles(import_graph(package))
    for name, lines in long.items():
        print(f"{name}: {lines} lines (limit {MAX_LINES})")
    for cycle in cycles:
        print("import cycle: " + " <-> ".join(cycle))
    if long or cycles:
        return 1
    count = len(list(package.rglob("*.py")))
    print(f"{package.name}: {count} modules, none over {MAX_LINES} lines, no import cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())

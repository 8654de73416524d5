"""The package's shape: layers imported only downward, no import cycles (function-level and TYPE_CHECKING imports
count), few top-level modules, small modules, and a README map that matches the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
# Modules allowed past this many lines must say why here.
MAX_LINES = 300
LONG_MODULES: dict[str, str] = {
    "pipeline/retriever.py": "the public API facade: one short method per user operation (build, load, search, "
                             "embed, swap, add, remove, items), each delegating to its stage's module",
}

# The layers, lowest first: a module may import its own layer and those below it, never one above. The package's
# __init__ and __main__ only re-export and start the CLI, so they stand above everything.
LAYERS: list[set[str]] = [
    {"version"},
    {"core"},
    {"config"},
    {"data"},
    {"encoders"},
    {"space"},
    {"ann"},
    {"store"},
    {"indexing"},
    {"evaluate"},
    {"query", "retriever"},
    {"serve"},
    {"cli", "demo"},
]
TOP_LEVEL_MAX = 12


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth: inside functions and under ``if TYPE_CHECKING:`` too, since an import
    kept only for a type still ties the two modules together for a reader."""
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, mods: dict[str, Path]) -> set[str]:
    """The pipeline modules an import statement loads (``from x import y`` loads x.y when y is a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = module if is_package else module.rpartition(".")[0]
        for _ in range(max(node.level - 1, 0)):
            base = base.rpartition(".")[0]
        if node.level:
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    out = set()
    for name in names:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[module] = set().union(
            *(_targets(module, path.name == "__init__.py", n, mods) for n in _imports(tree))
        )
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return cycles


def test_no_import_cycles_in_pipeline():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (a function-level import that dodges one means a module boundary is wrong): " + (
        "; ".join(" <-> ".join(c) for c in cycles)
    )


def test_cycle_finder_sees_function_level_and_type_checking_imports(tmp_path):
    a = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pipeline.b\ndef f():\n    import pipeline.c\n")
    mods = {"pipeline.a": Path("a.py"), "pipeline.b": Path("b.py"), "pipeline.c": Path("c.py")}
    targets = set().union(*(_targets("pipeline.a", False, n, mods) for n in _imports(a)))
    assert targets == {"pipeline.b", "pipeline.c"}
    assert find_cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]
    assert find_cycles({"x": {"y"}, "y": set()}) == []


def test_modules_stay_small():
    too_long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
        and str(path.relative_to(PACKAGE.parent)) not in LONG_MODULES
    }
    assert not too_long, f"modules over {MAX_LINES} lines without a stated reason: {too_long}"


def layer_of(module: str) -> int | None:
    """The layer of a pipeline module by its first component below ``pipeline`` (None: the package itself)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] == "__main__":
        return None
    for i, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return i
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS in tests/test_architecture.py")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module in a higher layer than the importer's, as 'importer -> imported'."""
    out = []
    for module, targets in sorted(graph.items()):
        here = layer_of(module)
        for t in sorted(targets):
            there = layer_of(t)
            if here is not None and there is not None and there > here:
                out.append(f"{module} -> {t}")
    return out


def test_no_upward_imports_between_layers():
    bad = upward_imports(import_graph())
    assert not bad, "a lower layer imports a higher one (see LAYERS): " + "; ".join(bad)


def test_layer_check_sees_an_upward_import():
    graph = {"pipeline.core.hashing": {"pipeline.store.layout"}, "pipeline.store.layout": {"pipeline.core.hashing"}}
    assert upward_imports(graph) == ["pipeline.core.hashing -> pipeline.store.layout"]


def test_top_level_stays_small():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_LEVEL_MAX, f"pipeline/ has {len(top)} modules at its top level (stages go in packages): {top}"


def readme_package_map() -> dict[str, set[str]]:
    """The README's package table: each package (or top-level module) with the module names its row gives."""
    readme = (PACKAGE.parent / "README.md").read_text()
    start = readme.index("| layer |", readme.index("### The package, stage by stage"))
    table = readme[start:readme.index("\n\n", start)]
    rows: dict[str, set[str]] = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for where in re.findall(r"`([\w/]+(?:\.py)?)`", cells[1]):
            rows[where.rstrip("/")] = set(re.findall(r"`(\w+)\.py`", cells[2])) | set(re.findall(r"`(\w+)/`", cells[2]))
    return rows


def test_readme_package_map_matches_the_tree():
    rows = readme_package_map()
    missing, stale = [], []
    for where, named in rows.items():
        path = PACKAGE / where
        if where.endswith(".py"):
            stale += [] if path.is_file() else [where]
            continue
        actual = {p.stem for p in path.glob("*.py") if p.stem != "__init__"} | {
            p.name for p in path.iterdir() if (p / "__init__.py").is_file()}
        anywhere = {p.stem for p in path.rglob("*")} | {path.name}  # subpackages' modules, static/, the row itself
        missing += [f"{where}/{m}" for m in sorted(actual - named)]
        stale += [f"{where}/{m}" for m in sorted(named - anywhere)]
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    top = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py", "version.py"}
    missing += sorted((packages | top) - set(rows))
    assert not missing and not stale, f"README package map: not listed {missing}; listed but gone {stale}"

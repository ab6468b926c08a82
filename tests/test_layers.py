"""Imports run one way: no import circles in the package, and the scoring stages import only
the stages before them (flow -> features -> behaviour -> detectors -> decision -> model).

Read from the source (every import statement, at module level or inside a function, except
under ``if TYPE_CHECKING:``), so an import made late to dodge a circle still counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "netanomd"
#: The scoring stages in the order data flows through them.
LAYERS = (
    "netanomd.flow",
    "netanomd.features",
    "netanomd.behaviour",
    "netanomd.detectors",
    "netanomd.decision",
    "netanomd.model",
)
#: What every stage may import besides the stages before it.
SHARED = (
    "netanomd",
    "netanomd.errors",
    "netanomd.fsutil",
    "netanomd.bytescan",
    "netanomd.arraylist",
)
#: Runners inside a stage's package that read files end to end (not part of the stage's path).
RUNNERS = ("netanomd.behaviour.measure",)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                names |= _imported_names(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        names |= _imported_names(node)
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules importing it runs (a package's ``__init__`` included)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for imported in _imported_names(ast.parse(path.read_text(), str(path))):
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                # Importing a module runs its packages' __init__ first (not this module's own).
                if target in modules and target != name and not name.startswith(target + "."):
                    deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int | None:
    for rank, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            return rank
    return None


def test_the_graph_sees_real_imports() -> None:
    graph = import_graph()
    assert "netanomd.features.blocks" in graph["netanomd.features.spec"]
    assert "netanomd.features" in graph["netanomd.decision.explain"]  # via its __init__
    assert "netanomd.detectors.registry" in graph["netanomd.model.artifact"]


def test_no_import_circles() -> None:
    assert _cycles(import_graph()) == []


def test_a_circle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer", LAYERS)
def test_stages_import_only_earlier_stages(layer: str) -> None:
    rank = LAYERS.index(layer)
    graph = import_graph()
    wrong = {
        f"{module} -> {dep}"
        for module, deps in graph.items()
        if _layer(module) == rank and module not in RUNNERS
        for dep in deps
        if dep not in SHARED and _layer(dep) not in range(rank + 1)
    }
    assert sorted(wrong) == []

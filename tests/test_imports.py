"""The import graph of threatshare and workers points one way: no cycle, the CLI at the top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("threatshare", "workers")
#: ``python -m threatshare`` is the CLI under another name: the one module that may import it.
CLI_ENTRY_POINTS = {"threatshare.__main__"}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            anchor = package[: len(package) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in its body (functions included)."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            for target in _imported(node, name, path.name == "__init__.py"):
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    """No module of threatshare or workers reaches itself through its imports."""
    graph = import_graph()
    assert len(graph) > 40  # the walk found the project
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_nothing_imports_the_cli() -> None:
    """The CLI is the top of the graph: no module imports threatshare.cli."""
    importers = {name for name, targets in import_graph().items() if "threatshare.cli" in targets}
    assert importers <= CLI_ENTRY_POINTS


def test_a_cycle_through_a_function_level_import_is_found() -> None:
    """The cycle finder sees a cycle, and the walk counts imports made inside functions."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse("def f():\n    from threatshare.cli import main\n")
    found = [t for node in ast.walk(tree) for t in _imported(node, "workers.x", False)]
    assert "threatshare.cli" in found

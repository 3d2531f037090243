"""The import graph of threatshare and workers points one way: every import goes to a package
of a lower rank (docs/design.md#data-flow), no cycle, the CLI at the top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("threatshare", "workers")
#: ``python -m threatshare`` is the CLI under another name: the one module that may import it.
CLI_ENTRY_POINTS = {"threatshare.__main__"}

#: The rank of each package, low to high: a module imports only from its own package or from a
#: package of a lower rank (docs/design.md#data-flow). Top-level modules count as packages.
RANKS: dict[str, int] = {
    # Leaves: they import nothing of the project.
    "threatshare": 0,
    "threatshare.errors": 0,
    "threatshare.keys": 0,
    "threatshare.scrub": 0,
    "threatshare.durations": 0,
    "threatshare.timestamps": 0,
    "threatshare.capacity": 0,
    "threatshare.progress": 0,
    "threatshare.embedded": 0,
    "threatshare.mimecast_clock": 0,
    "threatshare.collector": 0,
    # HTTP's rules (loopback, URL checks, size caps) are below config, which validates with them.
    "threatshare.http_limits": 1,
    "threatshare.logs": 1,
    "threatshare.http": 2,
    "threatshare.config": 3,
    # Built on the configuration.
    "threatshare.connection": 4,
    "threatshare.auth": 4,
    # The upstreams, and records to entries.
    "threatshare.zia": 5,
    "threatshare.mimecast": 5,
    "threatshare.indicators": 5,
    # A process's resources, the state in Redis, the alerts a run sends.
    "threatshare.runtime": 6,
    # Hashes the configuration and the rules of what is never blocked (indicators).
    "threatshare.fingerprint": 6,
    "threatshare.state": 6,
    "threatshare.alerts": 6,
    "threatshare.sync": 7,
    "threatshare.ops": 8,
    "threatshare.sandbox": 9,
    "workers": 9,
    # The commands, each a module the CLI lists; then the CLI itself.
    "threatshare.commands": 10,
    "threatshare.cli": 11,
    "threatshare.__main__": 12,
}


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


def package_of(module: str) -> str:
    """The package a module belongs to for the ranks: ``threatshare.<name>`` or ``workers``."""
    parts = module.split(".")
    return "workers" if parts[0] == "workers" else ".".join(parts[:2])


def upward_imports(graph: dict[str, set[str]], ranks: dict[str, int]) -> list[str]:
    """Every import of ``graph`` into another package whose rank is not lower, as text."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            mine, theirs = package_of(module), package_of(target)
            if mine != theirs and ranks[theirs] >= ranks[mine]:
                found.append(f"{module} ({ranks[mine]}) imports {target} ({ranks[theirs]})")
    return found


def package_cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of packages (the first two parts of a module's name; ``threatshare`` itself left
    out) that reach each other through their modules' imports."""

    def pkg(module: str) -> str:
        return ".".join(module.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        for target in targets:
            if pkg(module) != pkg(target) and pkg(target) != "threatshare":
                edges.setdefault(pkg(module), set()).add(pkg(target))

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(edges.get(node, ()))
        return False

    return sorted({tuple(sorted((a, b))) for a, bs in edges.items() for b in bs if reaches(b, a)})


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


def test_every_package_has_a_rank() -> None:
    """A new package or top-level module is given a rank before it can import anything."""
    unranked = {package_of(name) for name in modules()} - set(RANKS)
    assert not unranked, f"give these a rank in RANKS: {sorted(unranked)}"


def test_imports_point_down_the_ranks() -> None:
    """No module imports a package of its own rank or above, inside functions included."""
    assert upward_imports(import_graph(), RANKS) == []


def test_no_package_cycle() -> None:
    """No two packages reach each other through their modules' imports."""
    assert package_cycles(import_graph()) == []


def test_an_upward_import_and_a_package_cycle_are_found() -> None:
    """The checks see an import against the ranks and a cycle between two packages."""
    graph: dict[str, set[str]] = {
        "threatshare.config.models": {"threatshare.ops.listen"},
        "threatshare.ops.listen": set(),
    }
    assert upward_imports(graph, RANKS) == [
        "threatshare.config.models (3) imports threatshare.ops.listen (8)"
    ]
    graph["threatshare.ops.listen"] = {"threatshare.config"}
    graph["threatshare.config"] = set()
    assert package_cycles(graph) == [("threatshare.config", "threatshare.ops")]

"""The shape of ``router/``: no import cycles, no module over ~400 lines.

Both are rules of the project (small modules by responsibility, seams that
do not loop back). The import graph is read with ``ast``, so nothing is
imported: every ``import router.x`` and ``from router.x import y`` in a
module of the package counts, wherever it is in the file (an import inside a
function still ties the two modules together), except under
``if TYPE_CHECKING:``, which never runs. Importing ``router.a.b`` also runs
the package ``router/a/__init__.py``, so that is an edge too, unless the
package is one the importing module is itself inside (already initialised).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "router"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            yield from (n for child in node.orelse for n in _imports_in(child))
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The router module ``name`` refers to: itself, or the package it is in."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _initialised(target: str, importer: str, known: dict[str, Path]) -> set[str]:
    """``target`` and the packages above it that importing it runs, for ``importer``."""
    found = {target}
    package = target.rpartition(".")[0]
    while package:
        inside = importer == package or importer.startswith(package + ".")
        if package in known and not inside:
            found.add(package)
        package = package.rpartition(".")[0]
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the router modules it imports (a ``from pkg import mod`` names ``pkg.mod``)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for candidate in candidates:
                found = _resolve(candidate, known)
                if found is not None:
                    targets.update(_initialised(found, name, known))
                    break  # ``from a.b import c``: c if it is a module, else a.b
        graph[name] = targets - {name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(start: str) -> None:
        # iterative, so a deep graph cannot hit the recursion limit
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return [_cycle_through(sorted(c), graph) for c in components]


def _cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A concrete loop a -> b -> … -> a inside one strongly connected component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first: the shortest way back to start
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    return [*paths[node], start]
                if child not in paths:
                    paths[child] = [*paths[node], child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"not a cycle: {component}")


def test_the_graph_is_read() -> None:
    """The walker sees real edges (a broken walker would find no cycle anywhere)."""
    graph = import_graph()
    assert "router.store.base" in graph["router.store.memory"]
    assert "router.store.redis_codec" in graph["router.store.redis"]
    assert "router.store" not in graph["router.store.memory"]  # its own package
    assert "router.store" in graph["router.app"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


# Branch h2 only: the store.memory <-> ratelimit loop and the big dialect,
# model and service modules are other branches' work. Drop both marks after merging.
def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles in router/:\n" + "\n".join(
        "  " + " -> ".join(cycle) for cycle in cycles
    )


def test_no_module_over_the_line_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    over = {name: n for name, n in sorted(sizes.items()) if n > MAX_LINES}
    for name, n in over.items():
        print(f"{name}: {n} lines (limit {MAX_LINES})")
    assert not over, f"modules over {MAX_LINES} lines (split by responsibility): {over}"

"""The house's shape: no circle of imports anywhere in `service/`, and no module past what one
reads at a sitting.

The import-linter contracts (`pyproject.toml`) keep the layers one way; a circle inside one
layer (a facade and its backends, the CLI and the demo) slips past them, so this walks the
imports itself. Imports inside functions and under TYPE_CHECKING count: they are circles too
as soon as the code is read or changed. A package's `__init__` that re-exports its submodules
is one end of a circle if a submodule imports a sibling through the package: submodules
import each other directly (`from service.cli.support import ...`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import grimp

SERVICE = Path(__file__).parent.parent / "service"
MAX_LINES = 500


def circles(nodes: Iterable[str], imports: Callable[[str], Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's, iterative), each
    sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(imports(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(imports(target)))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
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
                    found.append(sorted(component))
    return sorted(found, key=lambda c: (-len(c), c))


def test_circles_finds_a_circle_and_only_the_circle() -> None:
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},
        "d": set(),
        "e": {"e", "d"},  # a module importing itself is no circle between modules
        "f": {"g"},
        "g": {"f"},
    }
    assert circles(graph, graph.__getitem__) == [["a", "b", "c"], ["f", "g"]]
    assert circles({"x": {"y"}, "y": set()}, {"x": {"y"}, "y": set()}.__getitem__) == []


def test_no_module_of_the_service_imports_itself_back() -> None:
    graph = grimp.build_graph("service", include_external_packages=False)
    assert {"service.cli", "service.store.ingest"} <= graph.modules  # the walk saw the service
    found = circles(graph.modules, graph.find_modules_directly_imported_by)
    described = "; ".join(" <-> ".join(circle) for circle in found)
    assert not found, f"import circles (move what both sides need below both): {described}"


def test_no_module_of_the_service_is_longer_than_a_sitting() -> None:
    long = {}
    for path in sorted(SERVICE.rglob("*.py")):
        name = path.relative_to(SERVICE).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            long[name] = lines
    assert not long, f"over {MAX_LINES} lines (split where a reader looks for one thing): {long}"

"""Imports point one way (docs/architecture.md): engine knows nothing of the rest, tracing
sits below flows, and inside flows the executor calls services, never the reverse.

Every import counts, at module level or inside a function: a function-level import that
hides a circle is still a circle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "flows", "tracing", "astron")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, wherever the import statement stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def project_imports() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for package in PACKAGES
            for path in (ROOT / package).rglob("*.py") if "migrations" not in path.parts}


def importers_of(prefixes: tuple[str, ...], within: str) -> list[str]:
    return sorted(f"{module} imports {name}" for module, names in project_imports().items()
                  if module == within or module.startswith(within + ".")
                  for name in names if name in prefixes or name.startswith(
                      tuple(prefix + "." for prefix in prefixes)))


def test_the_engine_imports_nothing_of_the_platform():
    assert importers_of(("django", "rest_framework", "channels", "flows", "tracing",
                         "astron"), "engine") == []


def test_tracing_sits_below_flows():
    assert importers_of(("flows", "astron"), "tracing") == []


def test_services_never_import_the_executor():
    assert importers_of(("flows.execution",), "flows.services") == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def grouped(depth: int, within: str = "") -> dict[str, set[str]]:
    """The import graph between modules cut to their first `depth` name parts."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, names in project_imports().items():
        if within and not module.startswith(within):
            continue
        source = ".".join(module.split(".")[:depth])
        for name in names:
            if name.split(".")[0] in PACKAGES and (not within or name.startswith(within)):
                target = ".".join(name.split(".")[:depth])
                if target != source:
                    graph[source].add(target)
    return graph


def test_no_circle_between_packages():
    assert cycles(grouped(1)) == []


def test_no_circle_between_the_parts_of_flows():
    # flows.api, flows.services, flows.execution, flows.admin, flows.pages and the modules
    # directly in flows (models, cache, consumers, …) each count as one part.
    assert cycles(grouped(2, within="flows")) == []


def test_no_circle_inside_the_executor():
    graph = {module: {name for name in names if name.startswith("flows.execution.")}
             for module, names in project_imports().items()
             if module.startswith("flows.execution.")}
    assert cycles(graph) == []

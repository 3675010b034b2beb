"""wasinn-core's floors, read from its sources: no import cycle, each floor imports only downwards, and
one module touches wasmtime-py's private API (see docs/architecture.md).

Every import statement counts, wherever it is: at module level, inside a function, under
``if TYPE_CHECKING``. A function-level import hides a cycle from Python, not from the next reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import wasinn

PACKAGE = Path(wasinn.__file__).parent

#: Modules kept only so that imports written before the floors keep working; each re-exports names
#: from their new home, and nothing in wasinn imports them.
COMPATIBILITY_MODULES = {"wasinn.host.state", "wasinn.host.named", "wasinn.host.limits", "wasinn.component.runner"}


def _modules() -> dict[str, Path]:
    """Every module of the ``wasinn`` package (directories without ``__init__.py`` hold data: WIT
    files, the backend template's sources)."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if any(not (PACKAGE.parent.joinpath(*parts[:depth]) / "__init__.py").is_file()
               for depth in range(1, len(parts))):
            continue
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> Iterator[str]:
    """The wasinn modules ``module`` imports, anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in MODULES:
                    yield submodule  # `from wasinn.abi import entry`: the module entry
                elif target in MODULES:
                    yield target


GRAPH = {module: set(_imported(module, path)) for module, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; wasinn's graph is shallow enough to recurse
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_sources_are_read() -> None:
    # The graph is worth something only if it sees what it should.
    for module in ("wasinn.service.loader", "wasinn.abi.ephemeral", "wasinn.component.interface",
                   "wasinn.host.host", "wasinn.cli.main", "wasinn.testing.harness", "wasinn.sandbox"):
        assert module in GRAPH, module
    assert "wasinn.abi.linking" in GRAPH["wasinn.host.host"]  # imported inside a method


def test_wasinn_core_has_no_import_cycle() -> None:
    assert _cycles(GRAPH) == []


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


#: What each floor must never import (itself excluded): the floors are ground < service < boundary <
#: {abi, component} < host < {cli, testing}.
FORBIDDEN = {
    "service": {"boundary", "abi", "component", "host", "cli", "testing"},
    "boundary": {"abi", "component", "host", "cli", "testing"},
    "abi": {"component", "host", "cli", "testing"},
    "component": {"abi", "host", "cli", "testing"},
    "host": {"cli", "testing"},
}


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_each_floor_imports_only_downwards(floor: str) -> None:
    wrong = sorted(f"{module} -> {target}" for module, targets in GRAPH.items()
                   if _floor(module) == floor and module not in COMPATIBILITY_MODULES
                   for target in targets if _floor(target) in FORBIDDEN[floor])
    assert wrong == []


def test_the_ground_floor_imports_none_of_the_floors_above() -> None:
    # The ground floor: wasinn's top-level modules (enums, tensor, limits, budget, ranking, plugins ...);
    # ``python -m wasinn`` is the command line's.
    ground = [m for m, path in MODULES.items()
              if m.count(".") == 1 and path.name != "__init__.py" and m != "wasinn.__main__"]
    assert "wasinn.limits" in ground and "wasinn.budget" in ground
    above = {"service", "boundary", "abi", "component", "host", "cli", "testing"}
    wrong = sorted(f"{m} -> {t}" for m in ground for t in GRAPH[m] if _floor(t) in above)
    assert wrong == []


def test_nothing_in_wasinn_imports_a_compatibility_module() -> None:
    wrong = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets & COMPATIBILITY_MODULES)
    assert wrong == []


#: wasmtime-py's private attributes wasinn uses (besides its private modules ``wasmtime._ffi`` ...).
PRIVATE_ATTRIBUTES = {"_context", "_from_ptr", "_consume", "_invalidate", "_unintern", "_memory"}


def _private_uses(path: Path) -> list[str]:
    uses = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wasmtime"):
            module = node.module or ""
            names = [alias.name for alias in node.names]
            if any(part.startswith("_") for part in module.split(".")) or any(n.startswith("_") for n in names):
                uses.append(f"from {module} import {', '.join(names)}")
        elif isinstance(node, ast.Import):
            uses.extend(f"import {a.name}" for a in node.names
                        if a.name.startswith("wasmtime") and any(p.startswith("_") for p in a.name.split(".")))
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            uses.append(f".{node.attr}")
        elif isinstance(node, ast.Constant) and node.value in PRIVATE_ATTRIBUTES:
            uses.append(f"{node.value!r}")  # getattr(memory, "_memory", None)
    return uses


def test_one_module_owns_wasmtime_pys_private_api() -> None:
    owner = "wasinn.boundary.wasmtime_internals"
    assert _private_uses(MODULES[owner])  # the check sees the uses where they are
    elsewhere = {module: uses for module, path in MODULES.items() if module != owner
                 for uses in [_private_uses(path)] if uses}
    assert elsewhere == {}

"""Import-layer contract: the package's modules import each other without cycles.

Every import counts, also the ones inside functions (a function-level import hides a cycle, it does
not remove it); only imports under `if TYPE_CHECKING:` are left out, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "icai"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package modules that `module` imports anywhere, except under `if TYPE_CHECKING:`."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]

    def resolve(name: str) -> str | None:
        # the longest prefix of a dotted name that is a module of the package
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            for alias in node.names:
                # `from icai.llm import local` imports the submodule; `from icai import x` the root
                target = resolve(f"{base_name}.{alias.name}") if f"{base_name}.{alias.name}" in modules else None
                target = target or resolve(base_name)
                if target:
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module name -> the package modules it imports.

    Importing `a.b.c` also runs `a/b/__init__.py`, so that package counts too, unless it is a package the
    importing module lives in (that one is already being imported when the module runs).
    """
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = _imports(tree, name, path.name == "__init__.py", modules)
        for target in list(edges):
            parts = target.split(".")
            parents = (".".join(parts[:i]) for i in range(1, len(parts)))
            edges.update(p for p in parents if p != name and not name.startswith(p + "."))
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def _a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete import chain a -> ... -> a inside a strongly connected component."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if nxt not in parents:
                    parents[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return component


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    graph = import_graph(pkg)
    assert graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.c"] == set()
    assert find_cycles(graph) == [["pkg.a", "pkg.b"]]


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "icai.pipeline" in graph
    cycles = find_cycles(graph)
    message = "\n".join(
        f"import cycle among {len(c)} modules: {', '.join(c)}\n  e.g. {' -> '.join(_a_cycle(graph, c))}" for c in cycles
    )
    assert not cycles, message


STANDALONE = ("icai.errors", "icai._version", "icai.executor", "icai.debias", "icai.llm.prices", "icai.llm.converted")
"""Modules any layer may import: they import nothing else of icai."""


def test_the_bottom_modules_import_nothing_of_icai() -> None:
    graph = import_graph()
    assert {name: sorted(graph[name]) for name in STANDALONE} == {name: [] for name in STANDALONE}


def test_the_llm_layer_reaches_nothing_above_it() -> None:
    graph = import_graph()
    allowed = {"icai.errors", "icai.executor"}
    upward = {
        name: sorted(t for t in targets if not t.startswith("icai.llm") and t not in allowed)
        for name, targets in graph.items()
        if name == "icai.llm" or name.startswith("icai.llm.")
    }
    assert {name: t for name, t in upward.items() if t} == {}


def test_a_configuration_error_is_not_a_model_error() -> None:
    from icai.errors import ConfigError, LLMError
    from icai.llm.base import ConfigError as OldConfigError

    assert OldConfigError is ConfigError
    assert not issubclass(ConfigError, LLMError)

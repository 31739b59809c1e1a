"""Import-layer contract: the package's modules import each other without cycles and never upward.

Every import counts: the ones inside functions (a function-level import hides a cycle, it does not
remove it) and the ones under `if TYPE_CHECKING:` (a type-only import still says which module knows
which; a type a lower layer needs belongs in a lower layer). `make lint` runs this file.

The layers, top to bottom; a module imports only modules of its own layer or of layers below it
(`LAYERS` below is the checked copy of this table):

    entry points    icai (the Python API), icai.__main__, icai.cli(_options), icai.label_terminal, icai.app.*   parse, print, serve
    orchestration   icai.pipeline (the only orchestrator: a run's stage order),
                    icai.analyses (subgroups of a run, the comparison of two runs),
                    icai.lifetime (a run directory's lock, cache, log and report: one owner),
                    icai.labelling (a person's labelling session over a prepared run)
    outputs         report, compare_report, export, cost, progress, validate     what a run is turned into
    stages          propose, cluster, vote, voter, adaptive, embed_vote, select, evaluate, compare,
                    groups, surface, style, reward, target, user_principles, annotated_pairs, active   plain functions
    numerics        stats, debias, split
    data            io, shapes, formats, turns, store, prompts, parse, types,   records, files, prompt text,
                    votes (the vote table),
                    datasets                                                    the shipped example sets
    models          icai.llm.*, embed, executor, ray_executor     providers, caching, where calls run
    base            config, errors, _version, htmlsafe, textfmt, tables    importable from anywhere

This differs from the first draft of the house style in one place: the data layer sits above the models.
Prompts are built as the model layer's `Request` records (icai.prompts imports icai.llm.base), and the
model layer knows nothing of preference records, so providers can be changed without touching data code.
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


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package modules that `module` imports anywhere: module level, in functions, under `if TYPE_CHECKING:`."""
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
    assert graph["pkg.c"] == {"pkg.a"}  # a type-only import counts too
    assert find_cycles(graph) == [["pkg.a", "pkg.b"]]


def test_the_checker_finds_a_cycle_through_a_type_only_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from pkg.high import Config\n")
    (pkg / "high.py").write_text("from pkg.low import helper\n")
    graph = import_graph(pkg)
    assert find_cycles(graph) == [["pkg.high", "pkg.low"]]
    layers = (("high", ("pkg.high",)), ("low", ("pkg.low",)))
    assert upward_edges(graph, layers) == [("pkg.low", "pkg.high")]


def test_the_layer_check_allows_same_layer_and_downward_edges_only(tmp_path: Path) -> None:
    graph = {"pkg.a": {"pkg.b", "pkg.c"}, "pkg.b": {"pkg.c"}, "pkg.c": set(), "pkg.d": {"pkg.a"}}
    layers = (("top", ("pkg.a", "pkg.b")), ("bottom", ("pkg.c", "pkg.d")))
    assert upward_edges(graph, layers) == [("pkg.d", "pkg.a")]
    assert unplaced(graph, layers) == []
    assert unplaced({**graph, "pkg.e": set()}, layers) == ["pkg.e"]


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "icai.pipeline" in graph
    cycles = find_cycles(graph)
    message = "\n".join(
        f"import cycle among {len(c)} modules: {', '.join(c)}\n  e.g. {' -> '.join(_a_cycle(graph, c))}" for c in cycles
    )
    assert not cycles, message


LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry points", ("icai", "icai.__main__", "icai.cli", "icai.cli_options", "icai.label_terminal", "icai.app", "icai.app.*")),
    ("orchestration", ("icai.pipeline", "icai.analyses", "icai.lifetime", "icai.labelling")),
    ("outputs", ("icai.report", "icai.compare_report", "icai.export", "icai.cost", "icai.progress", "icai.validate")),
    (
        "stages",
        (
            "icai.propose",
            "icai.cluster",
            "icai.vote",
            "icai.voter",
            "icai.adaptive",
            "icai.embed_vote",
            "icai.select",
            "icai.evaluate",
            "icai.compare",
            "icai.groups",
            "icai.surface",
            "icai.style",
            "icai.reward",
            "icai.target",
            "icai.user_principles",
            "icai.annotated_pairs",
            "icai.active",
        ),
    ),
    ("numerics", ("icai.stats", "icai.debias", "icai.split")),
    (
        "data",
        (
            "icai.io",
            "icai.shapes",
            "icai.formats",
            "icai.turns",
            "icai.store",
            "icai.prompts",
            "icai.parse",
            "icai.types",
            "icai.votes",
            "icai.datasets",
        ),
    ),
    ("models", ("icai.llm", "icai.llm.*", "icai.embed", "icai.executor", "icai.ray_executor")),
    ("base", ("icai.tables", "icai.config", "icai.errors", "icai.files", "icai._version", "icai.htmlsafe", "icai.textfmt")),
)
"""The package's layers, top to bottom (see the module docstring); `name.*` stands for every module below `name`."""


def layer_of(module: str, layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS) -> int | None:
    """The index of the layer that lists `module` (0 = top), or None when no layer does."""
    for index, (_, members) in enumerate(layers):
        for member in members:
            if module == member or (member.endswith(".*") and module.startswith(member[:-1])):
                return index
    return None


def upward_edges(
    graph: dict[str, set[str]], layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS
) -> list[tuple[str, str]]:
    """Every (importer, imported) pair where the imported module sits in a higher layer than the importer."""
    found = []
    for module in sorted(graph):
        own = layer_of(module, layers)
        for target in sorted(graph[module]):
            theirs = layer_of(target, layers)
            if own is not None and theirs is not None and theirs < own:
                found.append((module, target))
    return found


def unplaced(graph: dict[str, set[str]], layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS) -> list[str]:
    """Modules of the package that no layer lists: a new module must be given its place."""
    return sorted(m for m in graph if layer_of(m, layers) is None)


def test_every_module_has_a_layer() -> None:
    assert unplaced(import_graph()) == [], "add the new module to LAYERS in tests/test_layers.py"


def test_no_module_imports_from_a_higher_layer() -> None:
    graph = import_graph()
    names = [name for name, _ in LAYERS]
    message = "\n".join(
        f"{a} ({names[layer_of(a) or 0]}) imports {b} ({names[layer_of(b) or 0]}), a higher layer"
        for a, b in upward_edges(graph)
    )
    assert not upward_edges(graph), message


STANDALONE = ("icai.errors", "icai._version", "icai.executor", "icai.llm.prices", "icai.llm.converted")
"""Modules any layer may import: they import nothing else of icai."""


def test_the_bottom_modules_import_nothing_of_icai() -> None:
    graph = import_graph()
    assert {name: sorted(graph[name]) for name in STANDALONE} == {name: [] for name in STANDALONE}


def test_the_llm_layer_reaches_nothing_above_it() -> None:
    graph = import_graph()
    allowed = {"icai.errors", "icai.executor", "icai.config"}
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


def private_imports(root: Path = PACKAGE_DIR) -> list[str]:
    """`module: name` for every import of another package module's private (underscore) name."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == root.name):
                found += [
                    f"{_module_name(path, root)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return found


def test_no_module_imports_a_private_name_of_another(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import _helper\n")
    assert private_imports(pkg) == ["pkg.a: pkg.b._helper"]
    assert private_imports() == []

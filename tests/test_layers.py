"""The import rules of the Development page, checked on the source: every import (inside functions and
``TYPE_CHECKING`` blocks too, and the modules a package re-exports lazily) flows down the pipeline's steps, the
packages form no cycle, nothing imports the CLI, no command module imports another, and the imports made when a
module loads (at its top, in ``TYPE_CHECKING`` blocks, in class bodies: everything outside a function) form no cycle
between modules."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# the pipeline's steps, lowest first; a module imports only from its own step or one below
STEPS = ("nn", "models", "data", "extract", "search", "match", "eval", "places", "train", "pipeline", "cli")
# modules directly under netvlad/: shared plumbing below every step, importing only each other
PLUMBING = ("_lazy", "constants", "errors", "files", "hashing", "limits", "numerics", "parallel", "registry",
            "threads")
# imports from a command module that are allowed for now (none)
PENDING: set[tuple[str, str]] = set()


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted((SRC / "netvlad").rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(encoding="utf-8"))
    return out


def _lazy_exports(tree: ast.Module) -> list[str]:
    """The module names of a ``lazy_exports(__name__, {module: names})`` call: imports made on first use."""
    return [key.value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "lazy_exports" and len(node.args) == 2
            and isinstance(node.args[1], ast.Dict)
            for key in node.args[1].keys if isinstance(key, ast.Constant) and isinstance(key.value, str)]


def _outside_functions(tree: ast.AST) -> list[ast.AST]:
    """The nodes of ``tree`` outside function bodies: what runs, or what a type checker reads, when it loads."""
    nodes = []
    for child in ast.iter_child_nodes(tree):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            nodes.append(child)
            nodes.extend(_outside_functions(child))
    return nodes


def _imports(tree: ast.Module, top_level_only: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    nodes = _outside_functions(tree) if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module!r}: write netvlad.… in full"
            if node.module:
                found.append((node.module, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            found.extend((a.name, ()) for a in node.names)
    if not top_level_only:
        found.extend((m, ()) for m in _lazy_exports(tree))
    return [(m, names) for m, names in found if m.startswith("netvlad")]


def _targets(module: str, names: tuple[str, ...], modules: dict[str, ast.Module]) -> list[str]:
    """The modules an import reads: ``from netvlad.eval import recall`` reads ``netvlad.eval.recall``."""
    subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
    return subs or [module]


def _step(module: str) -> int:
    """The step index of a module: -1 for the shared plumbing; the package root, a façade of names for users, sits
    with the CLI."""
    parts = module.split(".")
    if len(parts) == 1:
        return STEPS.index("cli")
    if parts[1] in PLUMBING:
        return -1
    assert parts[1] in STEPS, f"{module}: not in a pipeline step; add its folder to the Development page's map"
    return STEPS.index(parts[1])


def _package_graph(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, tree in modules.items():
        here = name.split(".")[1] if "." in name else "netvlad"
        for m, names in _imports(tree):
            for target in _targets(m, names, modules):
                there = target.split(".")[1] if "." in target else "netvlad"
                if there != here:
                    graph.setdefault(here, set()).add(there)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name, [])):
            return cycle
    return None


def test_every_import_flows_down_the_steps():
    modules = _modules()
    upward = [(name, target) for name, tree in modules.items() for m, names in _imports(tree)
              for target in _targets(m, names, modules) if _step(target) > _step(name)]
    assert upward == []


def test_packages_form_no_cycle():
    graph = _package_graph(_modules())
    assert {"extract", "search", "match", "eval", "places"} <= set(graph)
    graph.pop("netvlad", None)  # the package root re-exports a few names for ``import netvlad`` users
    assert _cycle(graph) is None


def test_the_checks_see_the_package():
    modules = _modules()
    assert "netvlad.data.dataset" in modules and len(modules) > 100
    tree = modules["netvlad.eval.recall"]
    assert "netvlad.extract.clusters" in {m for m, _ in _imports(tree)}  # imported inside a function
    assert "netvlad.extract.descriptors" in _lazy_exports(modules["netvlad.extract"])


def test_nothing_below_the_cli_imports_it():
    modules = _modules()
    offenders = [(name, m) for name, tree in modules.items() if not name.startswith("netvlad.cli")
                 for m, _ in _imports(tree) if m.startswith("netvlad.cli")]
    assert offenders == []


def _commands(modules: dict[str, ast.Module]) -> set[str]:
    return {name for name, tree in modules.items() if name.startswith("netvlad.cli.")
            and any(isinstance(n, ast.FunctionDef) and n.name == "register" for n in tree.body)}


def test_no_command_module_imports_another():
    modules = _modules()
    commands = _commands(modules)
    assert {"netvlad.cli.evaluate", "netvlad.cli.index", "netvlad.cli.train"} <= commands
    offenders = [(name, m, names) for name, tree in modules.items() if name.startswith("netvlad.cli.")
                 for m, names in _imports(tree) if m in commands and m != name
                 and not all((m, n) in PENDING for n in names)]
    assert offenders == []


def test_module_level_imports_form_no_cycle():
    """Type-hint imports count: two modules that need each other's types are one concept or share a third. An import
    inside a function (a registry entry importing its implementation when it runs) is not a load-time loop."""
    modules = _modules()
    # a package importing its own submodules, and a submodule importing from its package, is Python's usual way
    graph = {name: {m for m, _ in _imports(tree, top_level_only=True) if m in modules and m != name
                    and not name.startswith(m + ".")} for name, tree in modules.items()}
    assert _cycle(graph) is None

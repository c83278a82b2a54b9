"""The import rules of the Development page, checked on the source: nothing imports the CLI, no command module
imports another, and module-level imports form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# imports from a command module that are allowed for now (none)
PENDING: set[tuple[str, str]] = set()


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted((SRC / "netvlad").rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(encoding="utf-8"))
    return out


def _imports(tree: ast.Module, top_level_only: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            found.extend((a.name, ()) for a in node.names)
    return [(m, names) for m, names in found if m.startswith("netvlad")]


def _commands(modules: dict[str, ast.Module]) -> set[str]:
    return {name for name, tree in modules.items() if name.startswith("netvlad.cli.")
            and any(isinstance(n, ast.FunctionDef) and n.name == "register" for n in tree.body)}


def test_nothing_below_the_cli_imports_it():
    modules = _modules()
    offenders = [(name, m) for name, tree in modules.items() if not name.startswith("netvlad.cli")
                 for m, _ in _imports(tree) if m.startswith("netvlad.cli")]
    assert offenders == []


def test_no_command_module_imports_another():
    modules = _modules()
    commands = _commands(modules)
    assert {"netvlad.cli.evaluate", "netvlad.cli.index", "netvlad.cli.train"} <= commands
    offenders = [(name, m, names) for name, tree in modules.items() if name.startswith("netvlad.cli.")
                 for m, names in _imports(tree) if m in commands and m != name
                 and not all((m, n) in PENDING for n in names)]
    assert offenders == []


def test_module_level_imports_form_no_cycle():
    modules = _modules()
    # a package importing its own submodules, and a submodule importing from its package, is Python's usual way
    graph = {name: {m for m, _ in _imports(tree, top_level_only=True) if m in modules and m != name
                    and not name.startswith(m + ".")} for name, tree in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            assert visit(name, []) is None

"""The package's layout, read from the source with ``ast``: files and lines per package, the median function length,
and the import cycles between modules (imports made when a module loads: at its top, in ``TYPE_CHECKING`` blocks,
in class bodies) — the figures of the Development page's package map.

    python -m benchmarks layout [--src OTHER_CHECKOUT/src] [--results docs/results]
"""

from __future__ import annotations

import argparse
import ast
import statistics
from pathlib import Path

from benchmarks.common import REPO, add_results_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the src/ folder to read (default: this one)")
    add_results_option(parser)


def _load_time_imports(tree: ast.AST) -> list[str]:
    """The ``netvlad`` modules imported outside function bodies."""
    found = []
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(child, ast.ImportFrom) and child.module:
            found.append(child.module)
        elif isinstance(child, ast.Import):
            found.extend(alias.name for alias in child.names)
        found.extend(_load_time_imports(child))
    return [m for m in found if m.startswith("netvlad")]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module in ``graph`` (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while (member := stack.pop()) != node:
                    group.append(member)
                groups.append(sorted([*group, node]))
    return [g for g in groups if len(g) > 1]


def measure(src: Path) -> dict:
    """``{"packages": {name: (files, lines)}, "files", "lines", "functions", "median", "cycles"}`` of ``src``."""
    packages: dict[str, list[int]] = {}
    lengths = []
    trees = {}
    for path in sorted((src / "netvlad").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        parts = path.relative_to(src / "netvlad").parts
        package = parts[0] + "/" if len(parts) > 1 else "top level"
        counts = packages.setdefault(package, [0, 0])
        counts[0] += 1
        counts[1] += len(text.splitlines())
        tree = ast.parse(text)
        trees[".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")] = tree
        lengths += [node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    # a package importing its submodules, and a submodule importing from its package, is Python's usual way
    graph = {name: {m for m in _load_time_imports(tree) if m in trees and m != name and not name.startswith(m + ".")}
             for name, tree in trees.items()}
    return {"packages": {k: tuple(v) for k, v in packages.items()}, "files": sum(v[0] for v in packages.values()),
            "lines": sum(v[1] for v in packages.values()), "functions": len(lengths),
            "median": statistics.median(lengths), "cycles": cycles(graph)}


def run(args: argparse.Namespace) -> str:
    found = measure(args.src)
    rows = sorted(found["packages"].items(), key=lambda item: -item[1][1])
    lines = ["| package | files | lines |", "|---|---:|---:|"]
    lines += [f"| `{name}` | {files} | {count:,} |" for name, (files, count) in rows]
    lines += [f"| all | {found['files']} | {found['lines']:,} |", "",
              f"{found['functions']:,} functions, median {found['median']:g} lines; import cycles between modules: "
              f"{len(found['cycles'])}" + "".join(f" ({' ↔ '.join(g)})" for g in found["cycles"]) + "."]
    return "\n".join(lines)

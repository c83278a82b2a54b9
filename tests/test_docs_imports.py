"""Every ``netvlad`` name imported in the Python examples of the README and the documentation exists."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re

import pytest

from tests.conftest import REPO

PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _imports() -> list[tuple[str, str, str]]:
    found = []
    for page in PAGES:
        for block in BLOCK.findall(page.read_text(encoding="utf-8")):
            try:
                tree = ast.parse(block)
            except SyntaxError:  # an excerpt, not a whole program: its import lines still count
                lines = [line for line in block.splitlines() if line.startswith(("from ", "import "))]
                tree = ast.parse("\n".join(lines))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("netvlad"):
                    found += [(page.relative_to(REPO).as_posix(), node.module, a.name) for a in node.names]
                elif isinstance(node, ast.Import):
                    found += [(page.relative_to(REPO).as_posix(), a.name, "") for a in node.names
                              if a.name.startswith("netvlad")]
    return found


def test_the_pages_have_examples():
    assert {page for page, _, _ in _imports()} >= {"README.md", "docs/getting-started.md"}


@pytest.mark.parametrize(("page", "module", "name"), _imports())
def test_documented_imports_resolve(page, module, name):
    imported = importlib.import_module(module)
    assert not name or hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}"), \
        f"{page}: from {module} import {name}"

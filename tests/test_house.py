"""The size rules of the house, checked on the source: no file under ``src/`` over 300 lines, no function (methods
and nested functions included) over 60."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60


def _sources() -> dict[str, str]:
    return {path.relative_to(SRC).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted((SRC / "netvlad").rglob("*.py"))}


def test_no_file_over_300_lines():
    long = {name: n for name, text in _sources().items() if (n := len(text.splitlines())) > MAX_FILE_LINES}
    assert long == {}


def test_no_function_over_60_lines():
    long = {}
    for name, text in _sources().items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # from ``def`` to the last line of the body
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}:{node.lineno} {node.name}"] = lines
    assert long == {}


def test_the_checks_see_the_package():
    sources = _sources()
    assert "netvlad/data/dataset.py" in sources and len(sources) > 100

"""The command-line wording of a fix (an error's ``hint``) is printed only where the command takes its flags."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import netvlad
from netvlad.cli.main import FLAG, applicable_hint, build_parser, leaf_parsers, main, report
from netvlad.errors import BadInputError

SOURCE = Path(netvlad.__file__).parent


def _hints() -> list[str]:
    """Every ``hint=`` written in the package: string literals as they are, f-strings with each field as ``N``."""
    found = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.keyword) or node.arg != "hint":
                continue
            for value in ast.walk(node.value):
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.append(value.value)
                elif isinstance(value, ast.JoinedStr):
                    found.append("".join(p.value if isinstance(p, ast.Constant) else "N" for p in value.values))
    return sorted(set(found))


LEAVES = leaf_parsers(build_parser())


def test_every_hint_printed_by_every_command_names_only_flags_it_takes():
    hints = [h for h in _hints() if FLAG.search(h)]
    assert len(hints) >= 30 and len(LEAVES) >= 20
    unused = []
    for hint in hints:
        kept_by = [leaf.prog for leaf in LEAVES if applicable_hint(hint, leaf) == hint]
        for leaf in LEAVES:
            shown = applicable_hint(hint, leaf)
            if shown is not None:
                own = [f for f in FLAG.findall(shown.split("`")[0] + "".join(shown.split("`")[2::2]))]
                assert all(f in leaf._option_string_actions or f == "--nproc_per_node" for f in own), (hint, leaf)
        if not kept_by:
            unused.append(hint)
    # each hint reaches some command: a hint naming a flag that no command has would never be printed
    assert not unused, unused


def test_query_does_not_suggest_skip_bad_but_evaluate_does(caplog):
    error = BadInputError("x.jpg: cannot decode image; re-export it or pass skip_bad=True", hint="--skip-bad skips it")
    leaves = {leaf.prog.split(" ", 1)[1]: leaf for leaf in LEAVES}
    with caplog.at_level(logging.INFO, logger="netvlad"):
        report(error, leaves["query"])
        report(error, leaves["evaluate"])
    first, second = (r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert "--skip-bad" not in first and first.endswith("pass skip_bad=True")
    assert second.endswith("(on the command line: --skip-bad skips it)")


@pytest.mark.parametrize("command", ["query", "retrieve"])
def test_an_undecodable_query_image_is_one_line_with_a_fix_the_command_takes(command, tokyo_pair, tmp_path, caplog):
    """A real run: ``query`` has no --skip-bad, so its error does not offer it; ``retrieve`` has and does."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    model = ["--backbone", "mobilenet_v2", "--pool", "gem", "--resize", "fixed", "--size", "64", "64",
             "--no-progress", "--workers", "0", "--threads", "1"]
    if command == "query":
        assert main(["-q", "index", "build", str(tokyo_pair), "--out", str(tmp_path / "ix"), *model]) == 0
        argv = ["query", str(bad), "--index", str(tmp_path / "ix"), "--threads", "1"]
    else:
        (tmp_path / "d" / "database").mkdir(parents=True)
        (tmp_path / "d" / "queries").mkdir()
        (tmp_path / "d" / "database" / "a.png").write_bytes((tokyo_pair / "tokyo_db.png").read_bytes())
        (tmp_path / "d" / "queries" / "a.png").write_bytes(b"not an image")
        argv = ["retrieve", str(tmp_path / "d" / "database"), str(tmp_path / "d" / "queries"),
                "--out", str(tmp_path / "r"), *model]
    caplog.clear()
    assert main(argv) == 1
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "cannot decode image" in line
    assert ("--skip-bad" in line) == (command != "query")

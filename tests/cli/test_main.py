"""The whole ``netvlad`` parser: every command (and command group) accepts exactly the options it accepted when this
list was written, with the same defaults, types and arities, whichever module or argument group defines them.

Moving an option between argument groups or modules leaves its command's fingerprint as it is; renaming, adding or
removing an option, or changing its default, changes it. After a deliberate change, update the command's line with
the count and fingerprint the failure prints (and say so in the changelog)."""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import subprocess
import sys

import pytest

from netvlad.cli.main import build_parser, entry
from netvlad.data import open_dataset

# prog: (options and positionals, fingerprint of their strings, dest, default, nargs, type, const, required, metavar)
PINNED = {
    "netvlad": (4, "205f8008ed0ca645"),
    "netvlad demo": (14, "0e2ac29a63f1992c"),
    "netvlad data": (1, "936883a2bbc250d9"),
    "netvlad data inspect": (18, "415b69c20ca39aa3"),
    "netvlad data convert": (19, "370d575f77ad9b03"),
    "netvlad data route": (9, "038f5ca9d47d05ae"),
    "netvlad generate": (8, "54e7563b788814bd"),
    "netvlad cluster": (35, "da967f5f6d36f817"),
    "netvlad train": (70, "35273e57467931c2"),
    "netvlad evaluate": (61, "da5ef0420b0af196"),
    "netvlad retrieve": (28, "ba35d482fc70f645"),
    "netvlad extract": (35, "94802e4d2bfb7db7"),
    "netvlad index": (1, "90ed0b698d592d12"),
    "netvlad index build": (42, "60a352a41afc603b"),
    "netvlad query": (31, "c8d951eb7da4fa48"),
    "netvlad export": (1, "db017b438fa03e82"),
    "netvlad export hloc": (36, "3899d92fcdf83808"),
    "netvlad export onnx": (14, "d0181f523201068e"),
    "netvlad export torchscript": (13, "db9d0c31b69f5441"),
    "netvlad convert": (8, "1dfe3b364e68a663"),
    "netvlad store": (1, "9a39023db9e76253"),
    "netvlad store verify": (2, "bbcc8733b9f7d42b"),
    "netvlad stream": (43, "0f98b2355ee0d4b2"),
    "netvlad seqnet": (1, "ab29209a754ce6cf"),
    "netvlad seqnet train": (48, "5801befcfd23633c"),
    "netvlad benchmark": (6, "9727ebeb670c1ca7"),
}


def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every sub-command's parser below it, each once, in order."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(p): p for p in action.choices.values()}.values():
                found += parsers(child)
    return found


def signature(action: argparse.Action) -> str:
    """One option as the command line sees it (not its help text nor its argument group)."""
    kind = getattr(action.type, "__name__", None) or type(action.type).__name__
    choices = sorted(action.choices) if isinstance(action, argparse._SubParsersAction) else None
    return repr((tuple(action.option_strings) or action.dest, action.dest, repr(action.default), action.nargs,
                 kind if action.type is not None else None, repr(action.const), action.required, action.metavar,
                 type(action).__name__, choices))


def fingerprints() -> dict[str, tuple[int, str, list[str]]]:
    """prog -> (number of options, fingerprint, the signatures it is taken over)."""
    found = {}
    for parser in parsers(build_parser()):
        rows = sorted(signature(a) for a in parser._actions if not isinstance(a, argparse._HelpAction))
        found[parser.prog] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16], rows)
    return found


@pytest.fixture
def machine_free(monkeypatch):
    """Defaults that follow the machine or the environment, fixed: cores (generate --workers) and
    $NETVLAD_ENGINE (--engine)."""
    monkeypatch.delenv("NETVLAD_ENGINE", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)


def test_every_command_keeps_its_options_and_defaults(machine_free):
    found = fingerprints()
    assert sorted(found) == sorted(PINNED), "commands added or removed: update PINNED"
    changed = {prog: found[prog][:2] for prog in found if found[prog][:2] != PINNED[prog]}
    assert not changed, "options changed (count, fingerprint): " + "; ".join(
        f"{prog}: {now} over\n  " + "\n  ".join(found[prog][2]) for prog, now in changed.items())


def test_the_fingerprint_sees_a_changed_default(machine_free):
    parser = build_parser()
    evaluate = next(p for p in parsers(parser) if p.prog == "netvlad evaluate")
    before = hashlib.sha256(repr(sorted(signature(a) for a in evaluate._actions)).encode()).hexdigest()
    evaluate._option_string_actions["--radius"].default = 30.0
    after = hashlib.sha256(repr(sorted(signature(a) for a in evaluate._actions)).encode()).hexdigest()
    assert before != after


def test_every_help_text_renders(machine_free):
    for parser in parsers(build_parser()):
        text = parser.format_help()
        assert text.startswith(f"usage: {parser.prog}")
        for action in parser._actions:
            for option in action.option_strings:
                assert option in text, f"{parser.prog} --help does not show {option}"


def test_entry_returns_mains_code_with_the_process_frozen_for_its_exit(monkeypatch, capsys):
    """``netvlad`` with no command: help, code 2, as main() says; the objects are frozen for the exit only then."""
    monkeypatch.setattr(sys, "argv", ["netvlad"])
    assert gc.get_freeze_count() == 0
    try:
        assert entry() == 2
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert "usage: netvlad" in capsys.readouterr().out


def test_a_command_run_as_the_process_writes_everything_before_it_exits(tmp_path):
    """``python -m netvlad.cli.main`` (the entry, then the frozen exit): a generated city is complete and opens,
    its log line flushed."""
    city = tmp_path / "city"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "netvlad.cli.main", "generate", "--out", str(city), "--size", "tiny",
                           "--workers", "0", "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    dataset = open_dataset(city)
    assert (len(dataset.database), len(dataset.queries)) == (20, 10)
    assert all(p.is_file() and p.stat().st_size > 0 for p in dataset.database.paths())
    missing = subprocess.run([sys.executable, "-m", "netvlad.cli.main", "evaluate", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode == 1 and missing.stderr.count("ERROR") == 1, missing.stderr

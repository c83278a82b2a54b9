"""Every numeric argument of every command is checked where it is parsed; --threads, -v/-q and lazy imports."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

import pytest
import torch

from netvlad.cli.main import build_parser, leaf_parsers, main
from netvlad.cli.options import THREADS_RULE, default_threads, usable_cores
from tests.conftest import REPO

# Arguments where 0 is meaningful (none, all, no tolerance, the first seed or layer); every other numeric
# argument must refuse 0. No numeric argument accepts a negative number or text.
ZERO_ALLOWED = {"--workers", "--seed", "--sample", "--frame-tolerance", "--val-places", "--train-from",
                "--cache-memmap-mb", "--weight-decay", "--momentum", "--rerank", "--pictures",
                "--min-positive-distance", "--propagate",
                "--verify-global-weight",
                "--exclude-recent", "--pca"}


def _command(parser: argparse.ArgumentParser) -> list[str]:
    """The words that select ``parser`` (``["index", "build"]``)."""
    return parser.prog.split()[1:]


def _numeric_arguments():
    for leaf in leaf_parsers(build_parser()):
        for action in leaf._actions:
            if action.option_strings and action.type is not None and action.type not in (str,):
                if hasattr(action.type, "limit") or action.type in (int, float):
                    yield pytest.param(leaf, action, id=f"{' '.join(_command(leaf))} {action.option_strings[-1]}")


def _required(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for the positional and required arguments (they exist: the repository folder)."""
    words = []
    for action in parser._actions:
        if not action.option_strings and action.dest != "help":
            words.append(str(REPO / "README.md") if action.dest in ("src", "images") else str(REPO))
        elif action.required:
            is_file = getattr(action.type, "__name__", "") == "output file"
            words += [action.option_strings[0], str(REPO / "not-written.out") if is_file else str(REPO)]
    return words


NUMERIC = list(_numeric_arguments())
# Arguments whose sign depends on another option (a threshold on a stream score registered as signed): the parser takes
# any number and the command refuses, in one line, a value that cannot apply to the option chosen with it (here the
# default score).
SIGNED = {p.id for p in NUMERIC if p.values[1].type.limit.accepts(-3)}


def test_every_numeric_argument_is_range_checked():
    assert len(NUMERIC) > 40 and SIGNED == {"stream --threshold"}
    unchecked = [p.id for p in NUMERIC if not hasattr(p.values[1].type, "limit")]
    assert not unchecked, f"plain int/float arguments: {unchecked}"


@pytest.mark.parametrize("leaf, action", NUMERIC)
@pytest.mark.parametrize("value", ["0", "-3", "abc"])
def test_numeric_argument_sweep(leaf, action, value, capsys, caplog):
    flag = action.option_strings[-1]
    argv = [*_command(leaf), *_required(leaf), flag, value]
    if value == "0" and flag in ZERO_ALLOWED:
        assert getattr(build_parser().parse_args(argv), action.dest) in (0, [0])
        return
    if value != "abc" and " ".join([*_command(leaf), flag]) in SIGNED:
        assert main(argv) == 1
        assert f"threshold {float(value)} is a distance here and must be a number > 0" in caplog.text
        return
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag}" in error and "must be" in error and repr(value) in error
    assert "Traceback" not in error


def test_threads_on_every_command():
    leaves = leaf_parsers(build_parser())
    assert len(leaves) >= 12
    for leaf in leaves:
        assert "--threads" in leaf._option_string_actions, leaf.prog
        assert THREADS_RULE in leaf._option_string_actions["--threads"].help


def test_threads_default_and_explicit(tmp_path, monkeypatch, caplog):
    (tmp_path / "notes.txt").write_text("not a dataset")
    assert default_threads(0) == max(1, usable_cores() - 1)
    assert default_threads(10_000) == 1
    monkeypatch.setattr("netvlad.cli.options.usable_cores", lambda: 16)
    assert (default_threads(0), default_threads(2)) == (15, 13)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: four processes share the 16 cores
    assert default_threads(0) == 3
    monkeypatch.undo()
    before = torch.get_num_threads()
    try:
        assert main(["data", "inspect", str(tmp_path / "notes.txt"), "--threads", "3"]) == 1  # after threads
        assert torch.get_num_threads() == 3 and os.environ["OMP_NUM_THREADS"] == "3"
        assert main(["data", "inspect", str(tmp_path / "notes.txt"), "--threads", str(usable_cores() + 1)]) == 1
        assert f"--threads {usable_cores() + 1} is more than the {usable_cores()} usable cores" in caplog.text
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("flags, level", [([], logging.INFO), (["-v"], logging.DEBUG),
                                          (["-q"], logging.WARNING)])
def test_verbose_and_quiet_set_netvlad_s_level(flags, level, monkeypatch):
    """One -v gives DEBUG (INFO is the default), -q WARNING: the level in force while the command runs."""
    seen = []
    monkeypatch.setattr("netvlad.cli.data.run_inspect",
                        lambda args: seen.append(logging.getLogger("netvlad.data").getEffectiveLevel()) or 0)
    assert main([*flags, "data", "inspect", str(REPO)]) == 0
    assert seen == [level]


PROBE = """
import sys
from netvlad.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
heavy = {"torch", "faiss", "matplotlib", "torchvision", "h5py", "scipy"} & set(sys.modules)
print("HEAVY:" + ",".join(sorted(heavy)))
sys.exit(code)
"""


def _imports_after(*argv: str) -> tuple[int, set[str], str]:
    """Exit code, heavy libraries imported, and stderr of ``netvlad ARGV`` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, timeout=60)
    line = [x for x in done.stdout.splitlines() if x.startswith("HEAVY:")][-1]
    return done.returncode, set(filter(None, line[len("HEAVY:"):].split(","))), done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["evaluate", "--help"], ["train", "--help"],
                                  ["evaluate", "/no/such/folder"], ["query", "x.jpg", "--index", "."],
                                  ["evaluate", ".", "--size", "-5"], ["train", ".", "--lr", "abc"],
                                  ["convert", "/no/such.mat", "--out", "x.safetensors"],
                                  ["export", "onnx", "--out", "."], ["evaluate", ".", "--output", "README.md/r.json"],
                                  ["data", "convert", ".", "--out", "README.md"]])
def test_help_version_and_argument_errors_import_no_heavy_library(argv):
    code, heavy, stderr = _imports_after(*argv)
    assert code in (0, 1, 2) and "Traceback" not in stderr
    assert not heavy, f"{argv} imported {heavy}"
    if code == 1:  # a path error: one line naming the path
        assert len(stderr.strip().splitlines()) == 1 and "ERROR" in stderr


def _read_in_cli(dest: str, source: str) -> bool:
    """Whether the CLI's code reads ``args.<dest>`` (directly, by getattr, or by name in a list of keys)."""
    import re

    return bool(re.search(rf"args\.{dest}\b|[\"']{dest}[\"']", source))


def test_every_option_of_every_command_is_read_or_refused():
    """No option is parsed and then dropped: each is read by the command's code (its effects and refusals are
    tested beside each command; model flags a checkpoint or an index would ignore are refused: test_honoured)."""
    import dataclasses

    from netvlad.train.train_config import TrainConfig

    source = "\n".join(p.read_text() for p in (REPO / "src" / "netvlad" / "cli").glob("*.py"))
    config_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unread = []
    for leaf in leaf_parsers(build_parser()):
        for action in leaf._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction) or action.dest in ("func",):
                continue
            if action.dest in config_fields and leaf.prog.endswith("train"):
                continue  # every TrainConfig field: read by config_from_args
            if not _read_in_cli(action.dest, source):
                unread.append(f"{leaf.prog} {'/'.join(action.option_strings) or action.dest}")
    assert not unread, f"options no code reads: {unread}"

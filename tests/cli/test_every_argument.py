"""Every option of every command, taken from the parsers themselves, changes what the command does or is refused.

For each command a tiny real run (six generated places at 32×32, a random MobileNetV2 + GeM) is the baseline;
for each of its options the same run with that option changed (a flag given or dropped, another choice, another
number, another file) must differ from the baseline — in a library call, a log line, a printed line, the files
written, the exit status or the torch threads (see ``argument_walk``) — or be refused with an error that names
the option. A new option is walked as soon as a parser has it: ignored, it fails here. Only the options listed in
``HEAVY`` are not walked, each with the reason.
"""

from __future__ import annotations

import argparse

import pytest
import torch
import yaml

from netvlad.cli.main import build_parser, leaf_parsers
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
from tests.cli import argument_walk
from tests.models.test_convert_pytorch import make_state, nanne_checkpoint
from tests.train.conftest import TINY, make_tiny_dataset

TINY_MODEL = ["--pool", "gem", "--no-pretrained", "--resize", "fixed", "--size", "32", "32"]
PAIR = ["--database", "database", "--queries", "queries"]
QUIET = ["--workers", "0", "--no-progress", "--device", "cpu"]

# The walk's training run: tiny, 1 epoch; pretrained weights and tensorboard left on, so that their flags act.
TRAIN_CONFIG = {k: v for k, v in TINY.items() if k not in ("pretrained", "tensorboard")} | {
    "epochs": 1, "size": [32, 32], "cluster_images": 6, "cache_refresh": 6, "batch_size": 6}

# The walk's benchmark suite: the six-place sequence, single frame and the plain trajectory baseline at L = 2.
BENCHMARK_SUITE = {"recall": [1], "baseline": "diagonal",
                   "models": {"m": {"backbone": "mobilenet_v2", "pool": "gem",
                                    "preprocessing": {"resize": "fixed", "size": [32, 32]}}},
                   "datasets": {"seq": {"path": "seq", "database": "database", "queries": "queries",
                                        "frame_tolerance": 1, "model": "m"}},
                   "methods": {"single": {}, "diagonal": {"method": "diagonal", "lengths": [2]}}}

# Options that need resources a 60-second CPU test has not: each is exercised by the named test instead.
HEAVY = {
    ("*", "--device"): "another device needs a GPU; device choice: tests/cli/test_arguments.py",
    ("evaluate", "--verify"): "Patch-NetVLAD re-ranking: tests/eval/verify",
    ("retrieve", "--verify"): "Patch-NetVLAD re-ranking: tests/eval/verify",
    ("query", "--verify"): "Patch-NetVLAD re-ranking: tests/eval/verify",
    ("evaluate", "--sequence-model"): "needs a trained SeqNet checkpoint: tests/match",
    ("convert", "SRC"): "another source checkpoint to convert: tests/models/test_convert_cli.py",
    ("generate", "--size"): "every other city size renders minutes of images: tests/data/test_synthetic.py",
}


def _command(leaf: argparse.ArgumentParser) -> str:
    return " ".join(leaf.prog.split()[1:])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The files every baseline reads: a six-place sequence, a tiny checkpoint, config, index and store."""
    from netvlad.cli.main import main

    root = tmp_path_factory.mktemp("walk")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    make_tiny_dataset(root / "seq", places=6, size=32)
    make_tiny_dataset(root / "seq2", places=6, size=32, seed=1)
    model = PlaceModel(ModelConfig(pool="gem", preprocessing=Preprocessing("fixed", (32, 32))), pretrained=False)
    save_model(model, root / "m.safetensors")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TRAIN_CONFIG))
    (root / "tiny2.yaml").write_text(yaml.safe_dump(TRAIN_CONFIG | {"lr": 0.002}))
    (root / "suite.yaml").write_text(yaml.safe_dump(BENCHMARK_SUITE))
    (root / "suite2.yaml").write_text(yaml.safe_dump(BENCHMARK_SUITE | {"methods": {"diagonal": {
        "method": "diagonal", "lengths": [3]}}}))
    assert main(["index", "build", str(root / "seq"), *PAIR, "--model", str(root / "m.safetensors"),
                 "--out", str(root / "idx"), *QUIET]) == 0
    assert main(["index", "build", str(root / "seq2"), *PAIR, "--model", str(root / "m.safetensors"),
                 "--out", str(root / "idx2"), *QUIET]) == 0
    assert main(["extract", str(root / "seq"), *PAIR, "--model", str(root / "m.safetensors"),
                 "--store", str(root / "store"), *QUIET]) == 0
    assert main(["-q", "train", str(root / "seq"), *PAIR, "--out", str(root / "run0"), "--config",
                 str(root / "tiny.yaml"), *QUIET]) == 0  # a finished run, for --resume
    torch.save(nanne_checkpoint(make_state("alexnet", k=4, vladv2=False, pcs=None)), root / "c.pth.tar")
    torch.set_num_threads(threads)
    from netvlad.cli import stream

    every, stream.PROGRESS_EVERY = stream.PROGRESS_EVERY, 1  # a progress line per frame: six frames show it
    yield root
    stream.PROGRESS_EVERY = every


def baselines(r) -> dict[str, list[str]]:
    """Each command's tiny run (``r``: the inputs folder; outputs under ``r/out``)."""
    seq, out = str(r / "seq"), r / "out"
    data = [seq, *PAIR, "--frame-tolerance", "1"]
    return {
        "demo": ["demo", "--preset", "tiny", "--out", str(out / "demo"), "--no-progress", "--device", "cpu"],
        "data inspect": ["data", "inspect", *data],
        "data convert": ["data", "convert", *data, "--out", str(out / "conv")],
        "data route": ["data", "route", f"{seq}/database", f"{seq}/queries", "--out", str(out / "route")],
        "generate": ["generate", "--out", str(out / "gen"), "--size", "tiny", "--workers", "0", "--no-progress"],
        "cluster": ["cluster", *data, "--out", str(out / "c.safetensors"), *TINY_MODEL[2:], "--pool", "netvlad",
                    "--clusters", "2", "--images", "6", "--per-image", "10", "--niter", "2", *QUIET],
        "train": ["train", *data, "--out", str(out / "run"), "--config", str(r / "tiny.yaml"), *QUIET],
        "evaluate": ["evaluate", *data, *TINY_MODEL, *QUIET, "--recall", "1,5", "--output",
                     str(out / "e" / "e.json")],
        "retrieve": ["retrieve", f"{seq}/database", f"{seq}/queries", "--out", str(out / "r"), *TINY_MODEL,
                     *QUIET],
        "extract": ["extract", *data, *TINY_MODEL, "--store", str(out / "st"), *QUIET],
        "index build": ["index", "build", *data, *TINY_MODEL, "--out", str(out / "idx"), *QUIET],
        "query": ["query", f"{seq}/queries/p001.png", "--index", str(r / "idx"), *QUIET],
        "benchmark": ["benchmark", "--suite", str(r / "suite.yaml"), "--out", str(out / "b"), "--data", str(r),
                      "--cache", str(out / "bc")],
        "export hloc": ["export", "hloc", *data, *TINY_MODEL, "--out", str(out / "g.h5"), *QUIET],
        "export onnx": ["export", "onnx", *TINY_MODEL, "--out", str(out / "m.onnx"), "--height", "32",
                        "--width", "32"],
        "export torchscript": ["export", "torchscript", *TINY_MODEL, "--out", str(out / "m.pt"), "--height", "32",
                               "--width", "32"],
        "convert": ["convert", str(r / "c.pth.tar"), "--out", str(out / "c.safetensors")],
        "store verify": ["store", "verify", str(r / "store")],
        "stream": ["stream", f"{seq}/database", "--out", str(out / "s.jsonl"), "--exclude-recent", "1", *TINY_MODEL,
                   *QUIET],
        "seqnet train": ["seqnet", "train", *data, *TINY_MODEL, *QUIET, "--length", "2", "--output-dim", "4",
                         "--pca", "4", "--epochs", "1", "--epoch-queries", "4", "--negative-samples", "3",
                         "--num-negatives", "1", "--val-places", "2", "--out", str(out / "sn.safetensors")],
    }


def positional(dest: str, r) -> str:
    """Another value of each positional argument: other data, another photo, another folder."""
    seq = r / "seq"
    return str({"dataset": r / "seq2", "images": seq / "queries" / "p002.png", "source": seq / "queries",
                "first": r / "seq2" / "database", "second": r / "seq2" / "queries", "folder": r / "idx",
                "database_folder": r / "seq2" / "database", "query_folder": r / "seq2" / "queries"}[dest])


def _without(argv: list[str], flag: str, count: int) -> list[str]:
    """``argv`` without ``flag`` and the ``count`` words after it."""
    at = argv.index(flag)
    return argv[:at] + argv[at + 1 + count:]


def _given(argv: list[str], action) -> tuple[str, list[str]] | None:
    """(the flag, its words) where ``argv`` gives ``action``'s option; None when it does not."""
    for at, word in enumerate(argv):
        if word in action.option_strings:
            words = []
            for next_word in argv[at + 1:]:
                if next_word.startswith("-") and not next_word.lstrip("-").replace(".", "").isdigit():
                    break
                words.append(next_word)
                if action.nargs is None:
                    break
            return word, words
    return None


# Values of options whose type says nothing about what to give (text, files, several words), per option name;
# a callable receives the inputs folder.
VALUES = {
    "--size": lambda r: ["40", "40"], "--out-split": lambda r: ["val"], "--split": lambda r: ["train"],
    "--database": lambda r: ["queries"], "--queries": lambda r: ["database"], "--image-root": lambda r: [str(r)],
    "--model": lambda r: [str(r / "m.safetensors")], "--init-model": lambda r: [str(r / "m.safetensors")],
    "--store": lambda r: [str(r / "out" / "store2")], "--names-root": lambda r: [str(r / "seq")],
    "--recall": lambda r: ["1,2"], "--velocities": lambda r: ["0.5,1"], "--check": lambda r: [
        str(r / "seq" / "database" / "p000.png")], "--map": lambda r: [str(r / "idx")],
    "--summary": lambda r: [str(r / "out" / "summary.json")], "--pr-plot": lambda r: [str(r / "out" / "pr.png")],
    "--save": lambda r: [str(r / "out" / "db")],
    "--data": lambda r: [str(r / "seq")], "--resume": lambda r: [str(r / "out" / "run")],
    "--config": lambda r: [str(r / "tiny2.yaml")], "--backbone": lambda r: ["alexnet"],
    "--shard": lambda r: ["1/2"], "--index": lambda r: [str(r / "idx2")],
    "--suite": lambda r: [str(r / "suite2.yaml")], "--cache": lambda r: [str(r / "out" / "bc2")],
    "--image-topic": lambda r: ["/camera/image"], "--gps-topic": lambda r: ["/gps/fix"],
    "--odom-topic": lambda r: ["/odom"], "--places": lambda r: ["0:3"],
    "--cluster-cache": lambda r: [str(r / "out" / "kmeans")],
    "--report": lambda r: [str(r / "out" / "report.md")],
    "--out": None,  # outputs: another path in the same folder (below)
}


def variant(command: str, action, base: list[str], r) -> list[str]:
    """``base`` with ``action``'s option changed: given or dropped, another choice, number or file."""
    if not action.option_strings:
        at = next(i for i, w in enumerate(base) if w == _positional_value(command, action, base))
        return [*base[:at], positional(action.dest, r), *base[at + 1:]]
    if action.dest == "resume":  # the run folder alone: a finished run has nothing left to train
        return ["train", "--resume", str(r / "run0"), *QUIET]
    given = _given(base, action)
    if action.nargs == 0:
        if isinstance(action, argparse.BooleanOptionalAction):
            positive, negative = action.option_strings
            current = (given[0] == positive) if given else action.default
            flag = negative if current else positive
            return [*(_without(base, given[0], 0) if given else base), flag]
        return _without(base, given[0], 0) if given else [*base, action.option_strings[0]]
    current = given[1] if given else None
    if current is None and action.default is argparse.SUPPRESS:  # train: the config file's value, or its default
        from netvlad.train import TrainConfig

        value = {**TrainConfig().to_dict(), **TRAIN_CONFIG}.get(action.dest)
        current = None if value is None else [str(value)]
    if action.choices is not None:
        now = current[0] if current else str(action.default)
        others = [str(c) for c in action.choices if str(c) != now]
        if not others:
            pytest.skip(f"{action.option_strings[-1]} has one choice only: {now}")
        words = others[:1]
    elif current and current[0] in argument_walk.TEXT:
        words = [argument_walk.TEXT[current[0]]]
    elif action.option_strings[-1] in VALUES and action.option_strings[-1] != "--out":
        words = VALUES[action.option_strings[-1]](r)
    elif action.dest in ("out", "output"):
        old = current[0]
        words = [old.replace(old.rsplit("/", 1)[-1], "other-" + old.rsplit("/", 1)[-1])]
    else:
        default = None if action.default is argparse.SUPPRESS else action.default
        words = [argument_walk.another_number(action, current[0] if current else default)]
    start = _without(base, given[0], len(given[1])) if given else base
    if action.dest == "model":  # a checkpoint instead of the off-the-shelf architecture the baseline names
        start = [w for w in start if w not in ("--no-pretrained", "--pool", "gem")]
    return [*start, action.option_strings[0], *words]


def _positional_value(command: str, action, base: list[str]) -> str:
    """The word of ``base`` that gives the positional ``action`` (the first, or the second of two)."""
    leaf = _leaves()[command]
    positionals = [a for a in leaf._actions if not a.option_strings]
    flagged = set()
    for at, word in enumerate(base):  # words that are values of flags are not positionals
        if word.startswith("--") and at + 1 < len(base) and not base[at + 1].startswith("-"):
            option = leaf._option_string_actions.get(word)
            if option is not None and option.nargs != 0:
                flagged.update(range(at + 1, at + 1 + (len(_given(base, option)[1]))))
    words = [w for at, w in enumerate(base) if at >= len(command.split()) and not w.startswith("-")
             and at not in flagged]
    return words[positionals.index(action)]


_LEAVES: dict = {}


def _leaves() -> dict[str, argparse.ArgumentParser]:
    if not _LEAVES:
        _LEAVES.update({_command(leaf): leaf for leaf in leaf_parsers(build_parser())})
    return _LEAVES


def _name(action) -> str:
    return action.option_strings[-1] if action.option_strings else (action.metavar or action.dest)


OPTIONS = [pytest.param(command, _name(action), id=f"{command} {_name(action)}")
           for command, leaf in _leaves().items() for action in leaf._actions
           if action.dest != "help" and not isinstance(action, argparse._VersionAction)]
_BASELINE: dict = {}


def _baseline(command: str, r) -> argument_walk.Outcome:
    """The command's tiny run, made twice: both must do exactly the same (else the walk would prove nothing)."""
    if command not in _BASELINE:
        argv = baselines(r)[command]
        first = argument_walk.run(argv, r, r / "out")
        assert first.code == 0, (argv, first.error)
        second = argument_walk.run(argv, r, r / "out", baseline=first.events)
        assert second.differs is None and len(second.events) == len(first.events), second.differs
        first.files_reproducible = first.files == second.files
        _BASELINE[command] = first
    return _BASELINE[command]


def test_every_command_has_a_baseline(tmp_path):
    assert set(baselines(tmp_path)) == set(_leaves())
    assert len(OPTIONS) > 300


@pytest.fixture(autouse=True)
def on_a_terminal(monkeypatch):
    """The walk runs every command as on a terminal, where --no-progress has bars to hide (elsewhere none are drawn)."""
    from netvlad.cli import main as cli_main

    monkeypatch.setattr(cli_main, "stderr_is_terminal", lambda: True)


@pytest.mark.parametrize("command, option", OPTIONS)
def test_option_changes_something_or_is_refused(command, option, inputs):
    reason = HEAVY.get((command, option)) or HEAVY.get(("*", option))
    if reason:
        pytest.skip(reason)
    _walk(command, _leaves()[command], option, inputs)


def test_an_ignored_option_fails_the_walk(inputs, monkeypatch):
    """An option that a parser has and the command never uses is caught: the walk's own check."""
    from netvlad.cli import main as cli_main

    real = cli_main.build_parser

    def with_unused() -> argparse.ArgumentParser:
        parser = real()
        leaf = next(leaf for leaf in leaf_parsers(parser) if _command(leaf) == "data inspect")
        leaf.add_argument("--unused", type=int, default=3, help="parsed, never read")
        return parser

    monkeypatch.setattr(cli_main, "build_parser", with_unused)
    leaf = next(leaf for leaf in leaf_parsers(with_unused()) if _command(leaf) == "data inspect")
    with pytest.raises(AssertionError, match="--unused: ignored"):
        _walk("data inspect", leaf, "--unused", inputs)


def _walk(command: str, leaf: argparse.ArgumentParser, option: str, inputs) -> None:
    """Assert that changing ``option`` changes what ``command``'s baseline run does, or is refused naming it."""
    base = _baseline(command, inputs)
    action = leaf._option_string_actions.get(option) or next(a for a in leaf._actions if _name(a) == option)
    argv = variant(command, action, baselines(inputs)[command], inputs)
    outcome = argument_walk.run(argv, inputs, inputs / "out", baseline=base.events)
    if outcome.differs:
        return  # honoured: what the command did changed (the first change is in outcome.differs)
    if outcome.code != 0:
        names = [*action.option_strings, action.dest, action.metavar or ""]
        assert any(name and name in outcome.error for name in names), (
            f"{argv} failed without naming {option}: {outcome.error}")
        return  # refused, naming the option
    changed = [what for what, same in (
        ("events", len(outcome.events) == len(base.events)), ("threads", outcome.threads == base.threads),
        ("files", outcome.files == base.files if base.files_reproducible else set(outcome.files) == set(base.files)),
    ) if not same]
    assert changed, f"{command} {option}: ignored — `{' '.join(argv)}` did exactly what the baseline did"

"""What a command does with its arguments, observed while it runs: the harness of ``test_every_argument.py``.

A run records one stream of what the command does, in order: every call from the CLI (``netvlad.cli.*``) into
the library (its function and normalised arguments), every log message and every line it prints; after it, the
exit status, the torch thread count and the files it wrote (names and bytes). A second run, with one option
changed, is compared with the first as it goes: it stops at the first event that differs (so most options cost
a few milliseconds); it runs to its end only when nothing differs until then.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import logging
import re
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

from netvlad.cli.main import main

ADDRESS = re.compile(r" at 0x[0-9a-f]+|0x[0-9a-f]{6,}", re.IGNORECASE)
DURATION = re.compile(r"\d+(\.\d+)? CPU s\b|\d+(\.\d+)? ?(s|ms|seconds|min)\b|\d+(\.\d+)? images/s|\d\d:\d\d:\d\d")


class Differs(BaseException):  # noqa: N818 - not an error: the evidence that an option changed something
    """Raised inside the run at the first event that differs from the baseline's."""

    def __init__(self, index: int, event, expected) -> None:
        super().__init__(f"event {index}: {str(event)[:300]} (baseline: {str(expected)[:300]})")


@dataclasses.dataclass
class Outcome:
    """What one run did: its event stream, exit status, threads, files and error text (stderr + ERROR lines)."""

    events: list
    code: int
    threads: int
    files: dict
    error: str
    differs: str | None = None  # set when a compared run stopped at its first differing event


def normalise(value, root: str, depth: int = 0):
    """A comparable, address-free text of an argument: arrays and tensors by shape, type and CRC32."""
    if isinstance(value, np.ndarray):
        return f"array{value.shape}{value.dtype}:{zlib.crc32(np.ascontiguousarray(value).view(np.uint8))}"
    if isinstance(value, torch.Tensor):
        return normalise(value.detach().cpu().numpy(), root)
    if isinstance(value, torch.nn.Module):
        state = value.state_dict()
        return f"{type(value).__name__}:" + ",".join(f"{k}{normalise(v, root)}" for k, v in state.items())
    if isinstance(value, dict) and depth < 3:
        return {str(k): normalise(v, root, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple) and depth < 3 and len(value) < 10000:
        return [normalise(v, root, depth + 1) for v in value]
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - an object whose repr fails: its type is what we can compare
        text = type(value).__name__
    return ADDRESS.sub("", text.replace(root, "ROOT"))[:4000]


class Recorder(logging.Handler):
    """Collects the event stream of one run; with ``baseline`` it raises :class:`Differs` at the first change."""

    def __init__(self, root: Path, baseline: list | None) -> None:
        super().__init__(logging.DEBUG)
        self.root, self.baseline, self.events = str(root), baseline, []

    def add(self, event) -> None:
        index = len(self.events)
        self.events.append(event)
        if self.baseline is not None and (index >= len(self.baseline) or self.baseline[index] != event):
            raise Differs(index, event, self.baseline[index] if index < len(self.baseline) else "(none)")

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR:  # errors: the refusal text, compared by the test itself
            self.add(("log", DURATION.sub("T", record.getMessage().replace(self.root, "ROOT"))))

    def profile(self, frame, event, arg) -> None:
        if event != "call":
            return
        caller = frame.f_back
        if caller is None or not caller.f_globals.get("__name__", "").startswith("netvlad.cli"):
            return
        module = frame.f_globals.get("__name__", "")
        if module.startswith("netvlad.") and not module.startswith("netvlad.cli"):
            arguments = {k: normalise(v, self.root) for k, v in frame.f_locals.items() if k != "self"}
            self.add(("call", f"{module}.{frame.f_code.co_qualname}", arguments))


class Printed(io.StringIO):
    """stdout of the run: each line an event."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.recorder.add(("print", DURATION.sub("T", line.replace(self.recorder.root, "ROOT"))))
        return len(text)


def _files(folder: Path, root: Path) -> dict:
    if not folder.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith((".log", ".tfevents")) and "tfevents" not in p.name}


def run(argv: list[str], root: Path, out: Path, baseline: list | None = None) -> Outcome:
    """Run ``netvlad ARGV`` in this process (outputs under ``out``, emptied first), recording what it does."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    torch.manual_seed(0)  # random weights (--no-pretrained) the same in every run
    np.random.seed(0)
    recorder, stderr, threads = Recorder(root, baseline), io.StringIO(), torch.get_num_threads()
    errors = logging.Handler(logging.ERROR)
    errors.emit = lambda record: stderr.write(record.getMessage() + "\n")
    netvlad_logger = logging.getLogger("netvlad")
    netvlad_logger.addHandler(recorder)
    netvlad_logger.addHandler(errors)
    differs, code = None, 0
    try:
        with contextlib.redirect_stdout(Printed(recorder)), contextlib.redirect_stderr(stderr):
            sys.setprofile(recorder.profile)
            try:
                code = main(argv)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            finally:
                sys.setprofile(None)
    except Differs as found:
        differs = str(found)
    finally:
        netvlad_logger.removeHandler(recorder)
        netvlad_logger.removeHandler(errors)
        used = torch.get_num_threads()
        torch.set_num_threads(threads)
    return Outcome(recorder.events, code, used, _files(out, root), stderr.getvalue(), differs)


# Another valid word for text options that the library checks (train's: TrainConfig validates them).
TEXT = {"official": "paper", "fixed": "none", "geometric": "arithmetic", "sum": "negative_mean",
        "violating_mean": "sum", "float16": "float32", "full": "partial", "torch": "onnxruntime", "sgd": "adam"}


def another_number(action, current) -> str:
    """A valid number other than ``current`` for a numeric option (its type parses and range-checks it)."""
    if current not in (None, "none"):
        value = float(current[0] if isinstance(current, list | tuple) else current)
        candidates = [str(int(value) + 1), str(value / 2 if value else 0.5), str(value + 1)]
    else:
        candidates = ["2", "0.5", "1"]
    for word in candidates:
        try:
            action.type(word)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            continue
        return word
    raise AssertionError(f"no other valid value for {action.option_strings}: add one to VALUES")

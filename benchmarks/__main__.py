"""``python -m benchmarks NAME [options]``: one subcommand per benchmark (``--help`` lists them).

Each benchmark module has ``add_arguments(parser)`` and ``run(args)``; a ``run`` that returns text returns its
Markdown table, printed here; with ``--results DIR`` that table (or, from a ``run`` that prints its report, what
it printed) is written to ``DIR/<name>.md`` under the command and machine line
(:func:`benchmarks.common.write_fragment`). ``--threads N`` (else the benchmark's own default) pins numpy's BLAS
too: the variables are set here, before any benchmark module imports numpy.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import shlex
import sys

from benchmarks.common import pin_threads, write_fragment

# name: (module, what it answers)
BENCHMARKS = {
    "bag-loop-closure": ("bag_loop_closure", "loop closures from a ROS bag through `netvlad stream` (docs/bags.md)"),
    "batch-policy": ("batch_policy", "the torch CPU batch policy end to end on real photos against one image a call"),
    "city-large": ("city_large", "a generated city end to end: generate, train on 2 ranks, extract, evaluate"),
    "cli-startup": ("cli_startup", "`netvlad --help`/--version/errors against `import torch` (target < 0.2×)"),
    "cpu-chunk": ("cpu_chunk", "images per torch call on a CPU against ms per image (why torch runs one a call)"),
    "deterministic": ("deterministic", "CPU cost of --deterministic's pinned kernels"),
    "diagonal-cost": ("diagonal_cost", "the diagonal sequence score against exact search at 10^5 frames"),
    "engine": ("engine", "extraction speed: pipeline, models alone, torch layouts, JPEG decoding (--part)"),
    "figures": ("figures", "the README's and docs/figures.md's tables, re-measured with `netvlad` itself"),
    "gpu": ("gpu", "VGG16 + NetVLAD on a GPU: precision, decoding, pipeline, training step, search"),
    "layout": ("layout", "files and lines per package, median function length, import cycles (from the source)"),
    "learning": ("learning", "learning curves per loss normalisation over seeds"),
    "loop-closure": ("loop_closure", "loop-closure PR curves on Gardens Point as one walk"),
    "loop-closure-checks": ("loop_closure_checks", "the loop-closure checks' time per frame over a large map"),
    "loop-closure-rule": ("loop_closure_rule", "the loop-closure rule chosen leave-one-route-out"),
    "loss-normalisation": ("loss_normalisation", "the loss normalisation per recipe, picked by the worst held-out set"),
    "nordland-recipe": ("nordland_recipe", "the Nordland training recipe against the settings it replaced, over seeds"),
    "onnx-overlap": ("onnx_overlap", "onnxruntime end to end (decode overlapped or not) against its bare model"),
    "peer-training": ("peer_training", "one training epoch beside Nanne/pytorch-NetVlad: validation recall, time"),
    "recall-loss": ("recall_loss", "Recall@N lost to approximate search and smaller descriptors"),
    "scale": ("scale", "how every cost grows with the database size"),
    "sequence": ("sequence", "sequence methods side by side, and their cost at 10^4-10^5 frames"),
    "stream": ("stream", "per-frame latency of describe + search + sequence over a growing map"),
    "stream-probes": ("stream_probes", "IVF lists the stream must probe for exact search's sequence matches"),
    "train": ("train", "training seconds per 1000 queries, cache refreshes included"),
    "verify": ("verify", "Patch-NetVLAD re-ranking presets against the global ranking, and their costs"),
    "verify-departures": ("verify_departures", "each departure from Patch-NetVLAD's code and its effect"),
    "verify-speed": ("verify_speed", "where `--verify speed` spends its time on Gardens Point, before and after"),
    "verify-precision": ("verify_precision", "`--verify speed`'s patch projection, f32 vs bf16, every set"),
    "verify-sequence": ("verify_sequence", "re-ranking composed with sequence matching, both orders"),
    "verify-whitening": ("verify_whitening", "the patch whitening, normalisation, shortlist and λ swept (the default)"),
}

# the benchmarks whose --threads default is not 1: BLAS is pinned to it before their modules (and numpy) load
THREADS = {"recall-loss": 2, "scale": 2}
# the benchmarks that count CPU time at several threads: OpenMP's idle threads sleep (set before torch loads), so that
# on a shared machine a thread's spinning is not billed as work
PASSIVE_WAIT = {"cpu-chunk"}


def build_parser() -> argparse.ArgumentParser:
    """The parser with one subcommand per entry of :data:`BENCHMARKS` (imports every benchmark module)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description="Run one of netvlad's benchmarks (NAME --help: what it measures).")
    commands = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, (module_name, summary) in BENCHMARKS.items():
        module = importlib.import_module(f"benchmarks.{module_name}")
        sub = commands.add_parser(name, help=summary, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(module=module)
    return parser


class _Tee(io.TextIOBase):
    """Writes go to ``stream`` and are kept (a benchmark's printed report, for ``--results``)."""

    def __init__(self, stream) -> None:
        self.stream, self.kept = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def set_up_logging(module) -> None:
    """The process's logging for one benchmark: its ``LOG_LEVEL`` (else WARNING), its ``QUIET_LOGGERS`` at WARNING."""
    logging.basicConfig(level=getattr(module, "LOG_LEVEL", logging.WARNING),
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for name in getattr(module, "QUIET_LOGGERS", ()):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the benchmark, print (and with ``--results``, write) its table; -> exit status.

    A ``run`` that returns text returns its table; one that prints its report instead has what it printed written."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = next((word for word in argv if not word.startswith("-")), "")
    pin_threads(argv, THREADS.get(name, 1))
    if name in PASSIVE_WAIT:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    set_up_logging(args.module)
    results = getattr(args, "results", None)
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee) if results is not None else contextlib.nullcontext():
        result = args.module.run(args)
    if isinstance(result, str):
        print(result)
    if results is not None:
        name = args.module.fragment_name(args) if hasattr(args.module, "fragment_name") else args.benchmark
        text = result if isinstance(result, str) else tee.kept.getvalue()
        command = "python -m benchmarks " + shlex.join(argv)
        print(f"wrote {write_fragment(results, name, text, command, getattr(args, 'seed', 0) or 0)}")
    return 0 if result is None or isinstance(result, str) else int(result)


if __name__ == "__main__":
    sys.exit(main())

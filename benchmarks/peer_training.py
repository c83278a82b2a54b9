"""One training epoch side by side with Nanne/pytorch-NetVlad on the same data and settings.

    nice -n 10 python -m benchmarks peer-training --peer PATH/TO/pytorch-NetVlad --seeds 0 1 2

``--peer`` is a checkout (or a bare git folder) of https://github.com/Nanne/pytorch-NetVlad. Into a temp folder
outside the repository the benchmark writes Pittsburgh-style ``dbStruct`` .mat files built from the shared Nordland
thumbnails (summer database, winter queries 5 m off the database line; training: places 0–1999 with the 1,000
even places as queries; validation: places 2000–2399), a copy of the peer with the patches it needs to run here
(:data:`PEER_PATCHES`), and runs, per seed, the peer and netvlad as two one-thread processes at the same time:
AlexNet from scratch, K = 64, 128 × 256 input, SGD lr 1e-4, momentum 0.9, weight decay 1e-3, margin 0.1, 10
negatives of 1,000 sampled, cache refresh 1,000, 4 tuples per batch, one epoch. It reports validation
Recall@1/5/10 before and after the epoch, the epoch's wall and CPU seconds and each process's peak memory (the
peer's: the larger of its k-means and training processes), per seed and as mean ± sd over the seeds.

One seed costs about 300 s CPU on netvlad's side and 900 s on the peer's. ``--jobs N`` runs N seeds at once; with
``--keep DIR`` a run that was stopped can be started again: seeds whose results DIR holds are not rerun (the table
says which).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, SHARED_DATA, THREAD_VARIABLES, add_results_option
from benchmarks.learning import ALEXNET
from netvlad.train.train_config import LOSS_NORMALIZATIONS

NORDLAND = SHARED_DATA / "nordland"
SPACING_M = 25.0  # metres between places: a neighbour 5 m off the line is 25.5 m away, a negative
QUERY_OFFSET_M = 5.0
TRAIN_PLACES, VAL_PLACES = range(0, 2000), range(2000, 2400)
TRAIN_QUERIES = TRAIN_PLACES[::2]

# (file, text, replacement, why): everything changed in the peer's code to run here, on the same settings
PEER_PATCHES = (
    ("pittsburgh.py", "root_dir = '/nfs/ibrahimi/data/pittsburgh/'", "root_dir = __import__('os').environ['PEER_DATA']",
     "data root from the environment instead of a hard-coded /nfs path"),
    ("pittsburgh.py", "struct_dir = join(root_dir, 'datasets/')", "struct_dir = root_dir",
     "the .mat files beside the images"),
    ("pittsburgh.py", "queries_dir = join(root_dir, 'queries_real')", "queries_dir = root_dir",
     "query file names relative to the same root"),
    ("pittsburgh.py", "        transforms.ToTensor(),", "        transforms.Resize((128, 256)),\n"
     "        transforms.ToTensor(),", "the 128 × 256 input (bilinear, as netvlad's fixed resize)"),
    ("main.py", "torch.cuda.memory_allocated()", "0", "no CUDA memory queries on a CPU-only torch"),
    ("main.py", "torch.cuda.memory_cached()", "0", "no CUDA memory queries on a CPU-only torch"),
    ("main.py", "np.in1d(", "np.isin(", "numpy 2 removed np.in1d (np.isin is the same test)"),
    ("main.py", "        not_improved = 0\n        best_score = 0\n",
     "        not_improved = 0\n        best_score = 0\n"
     "        torch.save({'state_dict': model.state_dict()}, join(opt.runsPath, 'init.pth.tar'))\n"
     "        test(whole_test_set, 0)\n",
     "keep the initial model and validate it before training (outside the timed epoch)"),
    ("main.py", "            train(epoch)\n",
     "            import time; _w, _c = time.perf_counter(), time.process_time()\n"
     "            train(epoch)\n"
     "            print('PEER_EPOCH_SECONDS', time.perf_counter() - _w, time.process_time() - _c, flush=True)\n",
     "time the training epoch (wall and CPU)"),
)

# stand-ins for modules not installed here: tensorboardX (logging only) and sklearn's exact NearestNeighbors
PEER_SHIMS = {
    "tensorboardX.py": '''"""Stand-in: SummaryWriter that only creates its log folder."""
import os


class _FileWriter:
    def __init__(self, logdir):
        self.logdir = logdir

    def get_logdir(self):
        return self.logdir


class SummaryWriter:
    def __init__(self, log_dir):
        os.makedirs(log_dir, exist_ok=True)
        self.file_writer = _FileWriter(log_dir)

    def add_scalar(self, *args, **kwargs):
        pass

    def close(self):
        pass
''',
    "sklearn/__init__.py": "",
    "sklearn/neighbors.py": '''"""Stand-in: sklearn's exact (brute-force Euclidean) NearestNeighbors."""
import numpy as np


class NearestNeighbors:
    def __init__(self, n_jobs=None):
        pass

    def fit(self, x):
        self.x = np.asarray(x, dtype=np.float64)
        return self

    def _distances(self, q):
        q = np.asarray(q, dtype=np.float64)
        return np.sqrt(np.maximum(((q[:, None, :] - self.x[None]) ** 2).sum(-1), 0))

    def kneighbors(self, q, n_neighbors):
        d = self._distances(q)
        order = np.argsort(d, axis=1, kind="stable")[:, :n_neighbors]
        return np.take_along_axis(d, order, 1), order

    def radius_neighbors(self, q, radius, return_distance=True):
        d = self._distances(q)
        index = np.empty(len(d), dtype=object)
        dist = np.empty(len(d), dtype=object)
        for i, row in enumerate(d):
            index[i] = np.flatnonzero(row <= radius)
            dist[i] = row[index[i]]
        return (dist, index) if return_distance else index
''',
}


def place_name(place: int) -> str:
    """The thumbnail file name of Nordland place ``place`` (0-based)."""
    return f"images-{(place + 1) * 10:05d}.png"


def write_dbstruct(path: Path, which: str, places: range, query_places: range) -> Path:
    """A Pittsburgh-style ``dbStruct`` .mat: summer database images at (place × 25 m, 0), winter queries 5 m off."""
    import scipy.io

    def cell(names: list[str]) -> np.ndarray:
        array = np.empty((len(names), 1), dtype=object)
        array[:, 0] = names
        return array

    utm_db = np.stack([np.asarray(places, dtype=float) * SPACING_M, np.zeros(len(places))])
    utm_q = np.stack([np.asarray(query_places, dtype=float) * SPACING_M, np.full(len(query_places), QUERY_OFFSET_M)])
    struct = {"whichSet": which, "dbImageFns": cell([f"summer/{place_name(p)}" for p in places]), "utmDb": utm_db,
              "qImageFns": cell([f"winter/{place_name(p)}" for p in query_places]), "utmQ": utm_q,
              "numImages": len(places), "numQueries": len(query_places), "posDistThr": 25.0, "posDistSqThr": 625.0,
              "nonTrivPosDistSqThr": 100.0}
    scipy.io.savemat(path, {"dbStruct": struct})
    return path


def write_data(root: Path) -> dict[str, Path]:
    """``root``: links to the Nordland seasons and the training and validation .mat files (peer names)."""
    root.mkdir(parents=True, exist_ok=True)
    for season in ("summer", "winter"):
        if not (root / season).exists():
            (root / season).symlink_to(NORDLAND / season)
    return {"train": write_dbstruct(root / "pitts30k_train.mat", "train", TRAIN_PLACES, TRAIN_QUERIES),
            "val": write_dbstruct(root / "pitts30k_val.mat", "val", VAL_PLACES, VAL_PLACES)}


def peer_source(peer: Path, name: str) -> str:
    """``name`` from a peer checkout, or from HEAD of a bare git folder."""
    if (peer / name).is_file():
        return (peer / name).read_text()
    return subprocess.run(["git", "-C", str(peer), "show", f"HEAD:{name}"], capture_output=True, text=True,
                          check=True).stdout


def write_peer(peer: Path, folder: Path) -> Path:
    """The peer's code patched (:data:`PEER_PATCHES`, each must apply once) with its shims, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = {name: peer_source(peer, name) for name in ("main.py", "netvlad.py", "pittsburgh.py")}
    for name, old, new, why in PEER_PATCHES:
        if sources[name].count(old) < 1:
            raise RuntimeError(f"{peer}: {name} no longer contains the text patched for: {why}")
        sources[name] = sources[name].replace(old, new)
    for name, text in {**sources, **PEER_SHIMS}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def peer_recalls(log: str) -> list[dict]:
    """The validation Recall@1/5/10 (%) the peer printed, in order."""
    found = re.findall(r"Recall@(\d+): ([0-9.]+)", log)
    points, current = [], {}
    for n, value in found:
        current[f"r{n}"] = round(float(value) * 100, 2)
        if n == "20":
            points.append({k: current[k] for k in ("r1", "r5", "r10")})
            current = {}
    return points


def thread_env(threads: int, **extra: str) -> dict:
    """The environment for a child process pinned to ``threads`` threads."""
    import os

    return {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}, **extra}


# runs a command and prints the largest resident set of the processes it waited for (portable, no /usr/bin/time)
PEAK_WRAPPER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
                "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True); "
                "sys.exit(code)")


def start_peer(peer_dir: Path, data: Path, work: Path, seed: int) -> subprocess.Popen:
    """The peer's k-means then its one-epoch training, as one shell process writing ``work/peer.log`` (each step
    prints its peak memory: ``MAXRSS_KB``)."""
    work.mkdir(parents=True, exist_ok=True)
    flags = (f"--arch alexnet --fromscratch --nocuda --threads 0 --seed {seed} --dataPath {work} "
             f"--runsPath {work} --cachePath {work}")
    step = f"{sys.executable} -c {shlex.quote(PEAK_WRAPPER)} {sys.executable} main.py"
    cmd = f"{step} --mode cluster {flags} && {step} --mode train --nEpochs 1 {flags}"
    log = (work / "peer.log").open("w")
    return subprocess.Popen(["bash", "-c", cmd], cwd=peer_dir, stdout=log, stderr=subprocess.STDOUT,
                            env=thread_env(1, PEER_DATA=str(data), TMPDIR=str(work)))


def start_ours(data: Path, work: Path, seed: int, variant: str, init: Path | None) -> subprocess.Popen:
    """netvlad's one-epoch training (``--side ours``) as a process writing ``work/ours.json``."""
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "benchmarks", "peer-training", "--side", "ours", "--data", str(data),
           "--seeds", str(seed), "--variant", variant, "--out", str(work)]
    if init is not None:
        cmd += ["--init", str(init)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=(work / "ours.log").open("w"), stderr=subprocess.STDOUT,
                            env=thread_env(1, PYTHONPATH=f"{REPO / 'src'}:{REPO}"))


VARIANTS: dict[str, dict] = {"default": {}, **{name: {"loss_normalization": name} for name in LOSS_NORMALIZATIONS}}


def train_ours(data: Path, out: Path, seed: int, variant: str, init: Path | None) -> dict:
    """One epoch of netvlad on the .mat files in ``data`` -> recalls before/after, epoch seconds, peak memory."""
    import torch

    from netvlad.data import open_dataset
    from netvlad.train import loop
    from netvlad.train.train_config import TrainConfig

    torch.set_num_threads(1)
    config = TrainConfig(**{**ALEXNET, "val_places": 0, "epochs": 1, "seed": seed, "tensorboard": False,
                            "checkpoint_every": 10**6, "init_model": str(init) if init else None,
                            **VARIANTS[variant]})
    train, val = open_dataset(data / "pitts30k_train.mat"), open_dataset(data / "pitts30k_val.mat")
    started = time.perf_counter(), time.process_time()
    run, state = loop.build_run(config, train, val, out / "run", "cpu", resume=False, progress=False)
    setup = time.perf_counter() - started[0], time.process_time() - started[1]
    before = loop.validate_epoch(run, 0)
    wall, cpu = time.perf_counter(), time.process_time()
    loop.train_epoch(run, state)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = loop.validate_epoch(run, 1)
    run.log.close()
    return {"before": {f"r{n}": r for n, r in before.items()}, "after": {f"r{n}": r for n, r in after.items()},
            "epoch_wall_s": wall, "epoch_cpu_s": cpu, "setup_wall_s": setup[0], "setup_cpu_s": setup[1],
            "loss_normalization": config.loss_normalization,
            "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def read_peer(work: Path) -> dict:
    """The peer's recalls, epoch seconds and peak memory (the larger of its k-means and training processes) from
    ``work/peer.log``."""
    log = (work / "peer.log").read_text()
    points = peer_recalls(log)
    seconds = re.search(r"PEER_EPOCH_SECONDS ([0-9.]+) ([0-9.]+)", log)
    rss = [int(kb) for kb in re.findall(r"MAXRSS_KB (\d+)", log)]
    if len(points) < 2 or seconds is None:
        raise RuntimeError(f"the peer run failed; see {work / 'peer.log'}:\n{log[-2000:]}")
    return {"before": points[0], "after": points[1], "epoch_wall_s": float(seconds[1]),
            "epoch_cpu_s": float(seconds[2]), "maxrss_kb": max(rss) if rss else None}


def finished(seed_dir: Path, with_peer: bool) -> dict | None:
    """A seed's results kept in ``seed_dir`` by an earlier run of the same ``--keep`` folder, else None."""
    try:
        ours = json.loads((seed_dir / "ours" / "ours.json").read_text())
        return {"ours": ours, **({"peer": read_peer(seed_dir / "peer")} if with_peer else {})}
    except (OSError, ValueError, RuntimeError):
        return None


def side_by_side(peer: Path, seeds: list[int], variant: str, work: Path, with_peer: bool, peer_init: bool,
                 jobs: int = 1) -> dict:
    """Per seed, the peer and netvlad at the same time (two one-thread processes; ``jobs`` seeds at once) -> their
    results. A seed whose results an earlier run kept in ``work`` is not run again (marked ``"kept": true``)."""
    data = work / "data"
    write_data(data)
    peer_dir = write_peer(peer, work / "peer") if with_peer or peer_init else None
    results, running = {}, []
    for seed in seeds:
        seed_dir = work / f"seed{seed}"
        kept = finished(seed_dir, with_peer)
        if kept is not None:
            results[seed] = {side: {**r, "kept": True} for side, r in kept.items()}
            continue
        while len(running) >= jobs:
            collect(running.pop(0), results, with_peer)
        running.append(start_seed(peer_dir, data, seed_dir, seed, variant, with_peer, peer_init))
    for started in running:
        collect(started, results, with_peer)
    return {seed: results[seed] for seed in seeds}


def start_seed(peer_dir: Path | None, data: Path, seed_dir: Path, seed: int, variant: str, with_peer: bool,
               peer_init: bool) -> tuple[int, Path, dict]:
    """One seed's processes started -> (seed, its folder, {side: process or None})."""
    init = None
    if peer_init:  # netvlad starts from the peer's initial model: its k-means, α and conv initialisation
        init = convert_peer_init(peer_dir, data, seed_dir / "peer", seed)
    jobs = {"ours": start_ours(data, seed_dir / "ours", seed, variant, init)}
    if with_peer and not peer_init:
        jobs["peer"] = start_peer(peer_dir, data, seed_dir / "peer", seed)
    return seed, seed_dir, jobs


def collect(started: tuple[int, Path, dict], results: dict, with_peer: bool) -> None:
    """Wait for one seed's processes and put its results in ``results``."""
    seed, seed_dir, jobs = started
    for job in jobs.values():
        if job.wait() != 0:
            raise RuntimeError(f"a run of seed {seed} failed; see the logs under {seed_dir}")
    ours = json.loads((seed_dir / "ours" / "ours.json").read_text())
    results[seed] = {"ours": ours, **({"peer": read_peer(seed_dir / "peer")} if with_peer else {})}


def convert_peer_init(peer_dir: Path, data: Path, work: Path, seed: int) -> Path:
    """Run the peer (k-means + its epoch) and convert its kept initial model to a netvlad checkpoint."""
    from netvlad.models import save_model
    from netvlad.models.converters import convert

    if start_peer(peer_dir, data, work, seed).wait() != 0:
        raise RuntimeError(f"the peer run failed; see {work / 'peer.log'}")
    conversion = convert(work / "init.pth.tar", "pytorch-netvlad")
    return save_model(conversion.model, work / "init.safetensors")


def spread(values: list[float], digits: int) -> str:
    """``mean ± sample sd`` of ``values`` (the mean alone for one value)."""
    mean = f"{np.mean(values):.{digits}f}"
    return f"{mean} ± {np.std(values, ddof=1):.{digits}f}" if len(values) > 1 else mean


def table(results: dict) -> str:
    """Markdown: per seed and side, validation R@1/5/10 before → after the epoch, and netvlad ÷ peer costs."""
    rows = ["| seed | side | R@1 | R@5 | R@10 | epoch wall s | epoch CPU s | peak MiB |",
            "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for seed, sides in results.items():
        for side, r in sides.items():
            name = f"netvlad, {r.get('loss_normalization', '?')}" if side.startswith("ours") else "pytorch-NetVlad"
            rss = f"{r['maxrss_kb'] / 1024:.0f}" if r.get("maxrss_kb") else "–"
            if r.get("after") is None:  # a run cut short: its starting point only
                started = " | ".join(f"{r['before'][k]:.2f} → –" for k in ("r1", "r5", "r10"))
                rows.append(f"| {seed} | {name} | {started} | – | – | – |")
                continue
            rows.append(f"| {seed} | {name} | " + " | ".join(f"{r['before'][k]:.2f} → {r['after'][k]:.2f}"
                                                           for k in ("r1", "r5", "r10"))
                        + f" | {r['epoch_wall_s']:.0f} | {r['epoch_cpu_s']:.0f} | {rss} |")
    for side, name in (("ours", "netvlad"), ("peer", "pytorch-NetVlad")):
        done = [s[side] for s in results.values() if s.get(side, {}).get("after")]
        if done:
            recalls = [spread([r["after"][k] for r in done], 2) for k in ("r1", "r5", "r10")]
            costs = [spread([r[k] for r in done], 0) for k in ("epoch_wall_s", "epoch_cpu_s")]
            rss = [r["maxrss_kb"] / 1024 for r in done if r.get("maxrss_kb")]
            costs.append(spread(rss, 0) if len(rss) == len(done) else "–")
            rows.append(f"| mean ± sd | {name} | " + " | ".join(recalls + costs) + " |")
    both = [s for s in results.values() if s.get("peer", {}).get("after") and s.get("ours", {}).get("after")]
    if both:
        ratio = {k: spread([s["ours"][k] / s["peer"][k] for s in both], 2)
                 for k in ("epoch_wall_s", "epoch_cpu_s", "maxrss_kb") if all(s[side].get(k) for s in both
                                                                              for side in ("ours", "peer"))}
        rows.append("")
        rows.append(f"netvlad ÷ pytorch-NetVlad over {len(both)} seed(s), mean ± sd: epoch wall time "
                    f"{ratio['epoch_wall_s']}×, CPU time {ratio['epoch_cpu_s']}×"
                    + (f", peak memory {ratio['maxrss_kb']}×" if "maxrss_kb" in ratio else "")
                    + " (wall time follows the machine's load, CPU time less so).")
    kept = sorted({str(seed) for seed, sides in results.items() for r in sides.values() if r.get("kept")})
    if kept:
        rows.append(f"Seed(s) {', '.join(kept)} were kept from an earlier run in the same `--keep` folder.")
    rows += ["", "The peer's code as run (pytorch-NetVlad, patched only to run here):", ""]
    rows += [f"- `{name}`: {why}" for name, _, _, why in PEER_PATCHES]
    rows += [f"- `{name}`: a stand-in module" for name in PEER_SHIMS if name.endswith(".py") and "__init__" not in name]
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--peer", type=Path, help="a checkout or bare git folder of Nanne/pytorch-NetVlad")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variant", default="default", help="netvlad's training variant (a key of VARIANTS)")
    parser.add_argument("--no-peer", action="store_true", help="netvlad only (controlled experiments)")
    parser.add_argument("--peer-init", action="store_true",
                        help="netvlad starts from the peer's initial model (the peer runs first, not beside it)")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="RESULTS",
                        help="only write the table of these kept results.json files (runs of other seeds)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder, deleted)")
    parser.add_argument("--side", choices=("both", "ours"), default="both", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--init", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds run at once (each seed is two one-thread processes: netvlad and the peer)")
    parser.add_argument("--threads", type=int, default=1)
    add_results_option(parser)


def run(args: argparse.Namespace) -> str | None:
    """Run the benchmark with the parsed options."""
    if args.variant not in VARIANTS:
        raise SystemExit(f"--variant {args.variant}: not one of {', '.join(VARIANTS)}")
    if args.side == "ours":
        from netvlad.files import atomic_write

        result = train_ours(args.data, args.out, args.seeds[0], args.variant, args.init)
        atomic_write(args.out / "ours.json", lambda tmp: tmp.write_text(json.dumps(result, indent=1)))
        return None
    if args.merge:
        results = {seed: sides for path in args.merge for seed, sides in json.loads(path.read_text()).items()}
        return table(results)
    if args.peer is None and not args.no_peer or args.peer_init and args.peer is None:
        raise SystemExit("--peer PATH: a checkout of Nanne/pytorch-NetVlad (or give --no-peer)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="peer-training-"))
    try:
        results = side_by_side(args.peer, args.seeds, args.variant, work, not args.no_peer, args.peer_init,
                               args.jobs)
        (work / "results.json").write_text(json.dumps(results, indent=1))
        args.seed = ", ".join(str(seed) for seed in args.seeds)  # the fragment's header names every seed
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return table(results)

"""Where `netvlad evaluate --verify speed` spends its time on Gardens Point at 480 px, before and after, side by side.

Gardens Point day_left (database) → day_right (queries), MobileNetV2 ImageNet + off-the-shelf NetVLAD (K = 64,
k-means on ``--cluster-images`` database images, as the command line initialises it), images resized to 480 px on
the longest side, the ``speed`` preset (size-5 patches, 512-D, rapid spatial scoring), top 100 re-ranked. Each side
(``--before SRC``, e.g. a checkout of main's ``src``, and this tree's ``src``) runs in its own child process with
the same model, images and thread count, one after the other; every figure is the thread's CPU time:

- ``fit``: the 512-D patch whitening fitted on the first ``--fit-samples`` of the 5,000 real size-5 patch vectors
  (81,920-D) the command line fits on; the after side also fits all 5,000, the before side's 5,000 is extrapolated
  as the fragment states;
- ``fit patches``: per image, the raw patch vectors the fit samples (100 database images);
- ``patches``: per image, backbone + whitened patch descriptors (every database and query image);
- ``match``: per query, re-ranking its top 100 (200 queries), read from memory;
- ``global``: per image, the global descriptor (backbone + NetVLAD) through torch, what the global evaluation
  costs per image without decoding.

Its table (``--results docs/results``: ``verify-speed.md``) adds the whole run estimated from these per-item costs.

``--end-to-end`` instead runs the real command, one run after the other, on this tree's ``src`` —
``netvlad evaluate`` on Gardens Point at 480 px with a fresh ``--store`` in a temporary folder (deleted after),
``--workers 0 --threads N``: at the first N without ``--verify`` (clustering the off-the-shelf centroids into a
temporary ``--cluster-cache``), again without, with ``--verify speed`` (fitting the patch whitening into that cache)
and with ``--verify speed`` again (reading it back); at each further N without and with ``--verify speed`` (both
reading the cache) — and tables each run's wall time, process CPU time (user + system, from the child's own resource
usage), peak memory and Recall@1/5, and the verify ÷ global ratios at each N (``verify-speed-end-to-end.md``); under
the table, the float32 arithmetic of projecting every image's windows and this CPU's rate at the runs' product shape
(one thread, in a child process of its own): the least CPU time the projection can take here.
With ``--rounds R`` the runs after the first two (which fill the caches) are made R times, each round every N's global
and ``--verify`` run in turn, and the table gives medians: a shared CPU's speed drifts by 20 % and more within minutes,
and a ratio of two runs side by side in one round drifts less than either.

    python -m benchmarks verify-speed --before /path/to/main/src [--images 12] [--fit-samples 2000] [--threads 1]
    python -m benchmarks verify-speed --end-to-end [--threads 1 [2 ...]] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, THREAD_VARIABLES, add_results_option
from benchmarks.common import SHARED_DATA as SHARED

FIT_IMAGES, DATABASE, QUERIES, TOP, CLI_SAMPLES = 100, 200, 200, 100, 5000
RUNS = (("global, clustering its k-means centroids first", False), ("global", False),
        ("--verify speed, fitting its patch whitening first", True), ("--verify speed", True))


def gardens_point_model(pretrained: bool = True):
    """MobileNetV2 + NetVLAD K = 64 on images resized to 480 px on the longest side, in eval mode: the model every
    part of this benchmark runs (``pretrained`` False: random weights, where only its shapes count)."""
    from netvlad.models import ModelConfig, PlaceModel, Preprocessing

    return PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=64,
                                  preprocessing=Preprocessing("longest", (480,))), pretrained=pretrained).eval()


def child(args: argparse.Namespace) -> dict:
    """Per-item thread CPU times of one side (the netvlad this process imports)."""
    import numpy as np
    import torch

    from netvlad.match.verify import get_preset
    from netvlad.match.verify import patches as patch_module
    from netvlad.match.verify.patches import PatchExtractor, iter_images, shrink_whitening
    from netvlad.match.verify.rerank import verify_shortlist
    from netvlad.nn import PCAWhitening
    from netvlad.nn.patch import patch_netvlad

    torch.set_num_threads(args.threads[0])
    gp = SHARED / "gardens_point"
    left = sorted((gp / "day_left").glob("*.jpg"))
    model = gardens_point_model()
    model.load_state_dict(torch.load(args.model, weights_only=True))
    layer, preset, out = model.pool, get_preset("speed"), {}
    weight = layer.conv.weight.view(layer.num_clusters, layer.dim)
    vectors, clock = [], time.thread_time()
    rng = np.random.default_rng(0)
    features = getattr(patch_module, "feature_maps", lambda m, im: m.features(im).float())  # as that side's fit does
    with torch.no_grad():  # the fit's patch vectors, sampled as the command line samples them
        for _, im in iter_images(model, left[::len(left) // FIT_IMAGES][:FIT_IMAGES], 1):
            v = patch_netvlad(features(model, im), weight, layer.conv.bias, layer.centroids, 5, 1,
                              layer.normalize_input)[0]
            vectors.append(v[torch.from_numpy(rng.choice(len(v), min(CLI_SAMPLES // FIT_IMAGES, len(v)),
                                                         replace=False))])
    out["fit_patches_s"] = (time.thread_time() - clock) / FIT_IMAGES
    pool = torch.cat(vectors)
    del vectors
    for n in args.fit_samples:
        clock = time.thread_time()
        whitening = shrink_whitening(PCAWhitening(pool.shape[1], preset.dim).fit(pool[:n]), 10.0)
        out[f"fit_{n}_s"] = time.thread_time() - clock
    del pool
    images = [im for _, im in iter_images(model, left[::max(1, len(left) // args.images)][:args.images], 1)]
    extractor = PatchExtractor(model, preset, whitening)
    clock = time.thread_time()
    patches = [extractor.from_images(im)[0] for im in images]
    out["patches_s"] = (time.thread_time() - clock) / len(images)
    clock = time.thread_time()
    with torch.no_grad():
        for im in images:
            model(im)
    out["global_s"] = (time.thread_time() - clock) / len(images)

    def read(i, rows):
        return (torch.stack([patches[r].descriptors[i].float() for r in rows]),
                torch.tensor([patches[r].grids[i] for r in rows]))

    rows = rng.integers(0, len(patches), (len(patches), TOP))
    clock = time.thread_time()
    for q, query in enumerate(patches):
        verify_shortlist(query, rows[q], np.linspace(0.5, 1.0, TOP), read, preset, torch.Generator().manual_seed(0))
    out["match_s"] = (time.thread_time() - clock) / len(patches)
    return out


def floor_child() -> dict:
    """The patch projection of the end-to-end runs: its float32 arithmetic for the 400 images and this CPU's rate
    at its product's shape (the windows of as many images as share one product, by 81,920 × 512), on one thread."""
    import torch
    from PIL import Image

    from netvlad.match.verify import get_preset
    from netvlad.match.verify.patches import feature_maps, iter_images
    from netvlad.nn.patch import SHARED_IMAGES, projection_rows, window_grid

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = gardens_point_model(pretrained=False)
    preset, layer = get_preset("speed"), model.pool
    gp = SHARED / "gardens_point"
    paths = sorted((gp / "day_left").glob("*.jpg"))[:DATABASE] + sorted((gp / "day_right").glob("*.jpg"))[:QUERIES]
    sizes = []
    for path in paths:  # the header alone: one image of each size is run
        with Image.open(path) as image:
            sizes.append(image.size)
    with torch.no_grad():  # each size's map (its windows), from an image as the runs resize it
        maps = {size: feature_maps(model, next(iter_images(model, [paths[sizes.index(size)]], 1))[1]).shape[2:]
                for size in set(sizes)}
    windows = [sum(r * c for r, c in (window_grid(*maps[size], patch, preset.stride) for patch in preset.sizes))
               for size in sizes]
    width, out_dim = layer.num_clusters * layer.dim, preset.dim
    most = max(windows)
    rows = min(SHARED_IMAGES, projection_rows(layer.num_clusters, layer.dim) // most) * most
    vectors, weight = torch.randn(rows, width), torch.randn(out_dim, width)
    product = torch.empty(rows, out_dim)
    times = []
    for _ in range(6):  # the first warms the BLAS up
        clock = time.perf_counter()
        torch.mm(vectors, weight.T, out=product)  # the product the projection runs
        times.append(time.perf_counter() - clock)
    gflops = 2 * rows * width * out_dim / min(times[1:]) / 1e9
    flop = 2 * sum(windows) * width * out_dim
    return {"images": len(paths), "windows": most, "rows": rows, "width": width, "dim": out_dim,
            "tflop": flop / 1e12, "gflops": gflops, "floor_cpu_s": flop / (gflops * 1e9)}


def projection_floor() -> dict:
    """:func:`floor_child` in a fresh process on one thread (the BLAS's thread count is set before it loads)."""
    pinned = dict.fromkeys(THREAD_VARIABLES, "1")
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}", **pinned)
    result = subprocess.run([sys.executable, "-m", "benchmarks.verify_speed", "--child", "--floor"], env=env,
                            cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_side(src: Path, args: argparse.Namespace, model: Path) -> dict:
    """``child`` in a fresh process importing netvlad from ``src``."""
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{REPO}")  # that side's netvlad, this benchmark
    command = [sys.executable, "-m", "benchmarks.verify_speed", "--child", "--model", str(model),
               "--images", str(args.images), "--threads", str(args.threads[0]),
               "--fit-samples", *map(str, args.fit_samples_for(src))]
    result = subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def whole_run(side: dict, fit_s: float) -> dict:
    """Seconds of the whole Gardens Point `--verify speed` run from per-item costs."""
    parts = {"fit": fit_s, "fit patches": FIT_IMAGES * side["fit_patches_s"],
             "patches": (DATABASE + QUERIES) * side["patches_s"], "match": QUERIES * side["match_s"]}
    return parts | {"total": sum(parts.values()), "global": (DATABASE + QUERIES) * side["global_s"]}


def evaluate_run(store: Path, clusters: Path, threads: int, verify: bool) -> dict:
    """One ``netvlad evaluate`` of Gardens Point at 480 px (this tree's ``src``): wall s, CPU s, peak MiB, recall."""
    command = [sys.executable, "-c", "import sys; from netvlad.cli.main import entry; sys.exit(entry())", "evaluate",
               str(SHARED / "gardens_point"), "--database", "day_left", "--queries", "day_right",
               "--resize", "longest", "--size", "480", "--workers", "0", "--threads", str(threads), "--no-progress",
               "--store", str(store), "--cluster-cache", str(clusters), *(["--verify", "speed"] if verify else [])]
    pinned = dict.fromkeys(THREAD_VARIABLES, str(threads))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), **pinned)
    clock = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.DEVNULL, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - clock
        out.seek(0)
        lines = out.read().splitlines()
    if child.returncode:
        raise SystemExit(f"netvlad evaluate{' --verify speed' if verify else ''} failed ({child.returncode}): "
                         + " ".join(command[3:]))
    header = max(i for i, line in enumerate(lines) if line.split()[:2] == ["R@1", "R@5"])
    rows = [line.split() for line in lines[header + 1:header + 4]]  # unlabelled, or global then the re-ranked row
    last = [row for row in rows if len(row) >= 4 and row[-1].replace(".", "").isdigit()][-1]
    recall = [float(v) for v in last[-len(lines[header].split()):][:2]]
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024,
            "r1": recall[0], "r5": recall[1]}


def end_to_end(args: argparse.Namespace) -> str:
    """The global and the ``--verify speed`` evaluation at each thread count, one after the other, ``--rounds``
    times -> the Markdown table: each run's median over the rounds, and the median of each round's ratio."""
    fill = [(args.threads[0], name, verify) for name, verify in RUNS[0::2]]  # clustering, then fitting: the caches
    rounds = [(threads, name, verify) for threads in args.threads for name, verify in RUNS[1::2]]
    with tempfile.TemporaryDirectory() as work:
        clusters = Path(work) / "clusters"  # the first run clusters k-means centroids, the later ones reuse them
        plan = fill + rounds * args.rounds
        runs = [(threads, name, evaluate_run(Path(work) / f"store-{i}", clusters, threads, verify))
                for i, (threads, name, verify) in enumerate(plan)]
    floor = projection_floor()
    counts = " and ".join(f"`--threads {threads}`" for threads in args.threads)
    lines = [f"`netvlad evaluate` on Gardens Point day_left → day_right ({DATABASE} + {QUERIES} images, 480 px, "
             f"MobileNetV2 ImageNet + off-the-shelf NetVLAD K = 64, `--workers 0`, {counts}, a fresh store each, one "
             "after the other, one `--cluster-cache` folder: the first run clusters the k-means centroids, the first "
             "`--verify` run fits the patch whitening, the later runs read them back); wall time and the process's "
             f"CPU time (user + system). The later runs ran in {args.rounds} round(s), each the global and the "
             "`--verify` evaluation at every thread count in turn: each figure is the median over the rounds (wall "
             "time of each round beside it), each ratio the median of the rounds' own ratios.", "",
             "| threads | run | wall s | wall s, each round | CPU s | peak MiB | R@1 | R@5 |",
             "|---:|---|---:|---|---:|---:|---:|---:|"]
    for threads, name in [(t, n) for t, n, _ in fill] + [(t, n) for t, n, _ in rounds]:
        each = [run_ for count, label, run_ in runs if (count, label) == (threads, name)]
        wall, cpu, peak = (statistics.median([r[key] for r in each]) for key in ("wall_s", "cpu_s", "peak_mib"))
        rounds_wall = " / ".join(f"{r['wall_s']:.0f}" for r in each) if len(each) > 1 else ""
        lines.append(f"| {threads} | {name} | {wall:.0f} | {rounds_wall} | {cpu:.0f} | {peak:,.0f} | "
                     f"{each[-1]['r1']:.1f} | {each[-1]['r5']:.1f} |")
    for threads in args.threads:
        at = {name: [run_ for count, label, run_ in runs if (count, label) == (threads, name)]
              for name, _ in RUNS}
        for name in (name for name, verify in RUNS if verify and at[name]):
            # round by round; a run made once (fitting the whitening) against the first round's global run
            ratio = {key: statistics.median([v[key] / g[key] for v, g in zip(at[name], at["global"], strict=False)])
                     for key in ("wall_s", "cpu_s")}
            lines.append(f"| **{threads}** | **{name} ÷ global** | {ratio['wall_s']:.2f}× | | "
                         f"{ratio['cpu_s']:.2f}× | | | |")
    first = {name: [run_ for count, label, run_ in runs if (count, label) == (args.threads[0], name)]
             for name in ("global", "--verify speed")}
    extra = (statistics.median([r["cpu_s"] for r in first["--verify speed"]])
             - statistics.median([r["cpu_s"] for r in first["global"]]))
    lines += ["", f"Projecting the patches is {floor['tflop']:.2f} TFLOP of float32 arithmetic ({floor['images']} "
              f"images, up to {floor['windows']} windows each, × {floor['width']:,} × {floor['dim']} multiply-adds). "
              f"This CPU's float32 product at the runs' shape ({floor['rows']} × {floor['width']:,} by "
              f"{floor['width']:,} × {floor['dim']}, one thread, the best of 5) runs at {floor['gflops']:.0f} GFLOPS: "
              f"at least {floor['floor_cpu_s']:.0f} CPU s, of the {extra:.0f} CPU s a `--verify` run spends over a "
              f"global one at {args.threads[0]} thread{'s' if args.threads[0] > 1 else ''}. The cores share that "
              "time whatever the schedule."]
    return "\n".join(lines)


def fragment_name(args: argparse.Namespace) -> str:
    """``verify-speed``, or ``verify-speed-end-to-end`` for the end-to-end runs."""
    return "verify-speed-end-to-end" if args.end_to_end else "verify-speed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--before", type=Path, default=None, help="src of the before side (required)")
    parser.add_argument("--images", type=int, default=12, help="database images timed per step")
    parser.add_argument("--fit-samples", type=int, nargs="+", default=[2000],
                        help="patch vectors of the side-by-side fit (the after side also fits 5,000)")
    parser.add_argument("--cluster-images", type=int, default=50)
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch threads (--end-to-end: one or more counts, each run at every one)")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--end-to-end", action="store_true",
                        help="time the real `netvlad evaluate` without and with --verify speed instead")
    parser.add_argument("--rounds", type=int, default=1,
                        help="--end-to-end: rounds of the global and the --verify runs at every thread count (medians)")
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Both sides, then the Markdown tables (or the end-to-end runs' table)."""
    if args.end_to_end:
        if args.before is not None:
            raise SystemExit("verify-speed --end-to-end times this tree's command only: drop --before")
        if args.rounds < 1:
            raise SystemExit(f"verify-speed --rounds must be ≥ 1, got {args.rounds}")
        return end_to_end(args)
    if args.rounds != 1:
        raise SystemExit("verify-speed --rounds applies to --end-to-end only")
    if args.before is None:
        raise SystemExit("verify-speed needs --before SRC: the src folder of the code to compare against")
    if len(args.threads) > 1:
        raise SystemExit("verify-speed --before compares at one thread count: give one --threads")
    import torch

    from netvlad.extract.clusters import ClusterConfig, cluster_if_off_the_shelf

    torch.set_num_threads(args.threads[0])
    torch.manual_seed(0)
    side_by_side = args.fit_samples[0]
    with tempfile.TemporaryDirectory() as work:
        model = gardens_point_model()
        left = sorted((SHARED / "gardens_point" / "day_left").glob("*.jpg"))
        cluster_if_off_the_shelf(model, left, ClusterConfig(num_images=args.cluster_images), batch_size=8)
        path = Path(work) / "model.pt"
        torch.save(model.state_dict(), path)
        args.fit_samples_for = lambda src: [side_by_side] + ([CLI_SAMPLES] if src != args.before else [])
        before = run_side(args.before, args, path)
        after = run_side(REPO / "src", args, path)
    ratio = before[f"fit_{side_by_side}_s"] / after[f"fit_{side_by_side}_s"]
    before_fit = before[f"fit_{side_by_side}_s"] * (CLI_SAMPLES / side_by_side) ** 2  # the Gram's n² products
    runs = {"before": whole_run(before, before_fit), "after": whole_run(after, after[f"fit_{CLI_SAMPLES}_s"])}
    lines = ["Thread CPU time.", "", "| per item (s) | before | after | before ÷ after |", "|---|---:|---:|---:|"]
    for key, label in (("fit_patches_s", "fit: raw patch vectors, per image"),
                       ("patches_s", "backbone + whitened patches, per image"),
                       ("match_s", f"re-ranking the top {TOP}, per query"),
                       ("global_s", "global descriptor (torch), per image"),
                       (f"fit_{side_by_side}_s", f"whitening fit on {side_by_side:,} patch vectors")):
        lines.append(f"| {label} | {before[key]:.3f} | {after[key]:.3f} | {before[key] / after[key]:.2f}× |")
    lines += ["", f"Whole run, {DATABASE} + {QUERIES} images (s, estimated from the per-item costs; the before "
              f"side's fit on {CLI_SAMPLES:,} vectors is its {side_by_side:,}-vector time × ({CLI_SAMPLES:,} / "
              f"{side_by_side:,})², the after side's is measured; fit ratio at {side_by_side:,}: {ratio:.2f}×):", "",
              "| step | before | after |", "|---|---:|---:|"]
    for key in ("fit", "fit patches", "patches", "match", "total", "global"):
        name = {"total": "**--verify speed, total**", "global": "global evaluation's descriptors (torch)"}.get(key, key)
        lines.append(f"| {name} | {runs['before'][key]:.0f} | {runs['after'][key]:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":  # a child process: one side (see run_side) or, with --floor, the projection's floor
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--child", action="store_true", required=True)  # only the benchmark's own children
    parser.add_argument("--floor", action="store_true")
    options = parser.parse_args()
    print(json.dumps(floor_child() if options.floor else child(options)))

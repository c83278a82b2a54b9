"""Patch-NetVLAD spatial re-ranking vs the global NetVLAD ranking, side by side in one run.

One off-the-shelf model (MobileNetV2 ImageNet + NetVLAD K=16, k-means on Gardens Point day_left, images resized to
640 px on the longest side) and one patch whitening (4096-D, fitted on size-5 patches of day_left; the 512/128-D
presets use its leading dims; each preset's dims are regularised as the command line's fit is, ε = SHRINK × their
mean eigenvalue). Each set's feature maps are computed once; database patches go to real float16
patch stores; every preset re-ranks the same global top ``--top``, and the fused variants add the global
similarity with weight λ. Costs: re-ranking of the top ``--timing-top`` for
``--timing-queries`` queries on random patch stores, every preset in turn in this process; peak resident memory
added by the patch descriptors of one 480×640 VGG16 map (30×40×512, K=64), in a fresh subprocess.

With ``--costs-only`` it measures the costs alone (no model, no sets) and ``--results DIR`` writes their table as
``DIR/reranking-cost.md``.

    python -m benchmarks verify [--top 20] [--city DIR] [--out verify.json]
    python -m benchmarks verify --costs-only --results docs/results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import REPO, SHARED_DATA, add_results_option, work_dir
from netvlad.data.conditions import query_conditions
from netvlad.data.readers import open_dataset
from netvlad.eval.recall import recall_at_n
from netvlad.extract.clusters import ClusterConfig, initialize_clusters
from netvlad.match.verify import get_preset
from netvlad.match.verify.patch_store import create_patch_store
from netvlad.match.verify.patches import SHRINK, PatchExtractor, fit_patch_whitening, iter_images, shrink_whitening
from netvlad.match.verify.rerank import normalise, verify_shortlist
from netvlad.models import ModelConfig, PlaceModel, Preprocessing
from netvlad.nn.patch import patch_netvlad, window_grid

FUSED = (0.25, 0.5, 0.75)  # λ of the global similarity in the fused variants


def model_and_whitening(cache: Path):
    """The off-the-shelf model and its 4096-D patch whitening (both cached in ``cache``)."""
    model = PlaceModel(ModelConfig(backbone="mobilenet_v2", pool="netvlad", num_clusters=16,
                                   preprocessing=Preprocessing("longest", (640,))), pretrained=True).eval()
    left = sorted((SHARED_DATA / "gardens_point" / "day_left").glob("*.jpg"))
    state = cache / "model.pt"
    if state.is_file():
        model.load_state_dict(torch.load(state, weights_only=True))
    else:
        initialize_clusters(model, left, ClusterConfig(num_images=100, niter=25), batch_size=8)
        torch.save(model.state_dict(), state)
    white = cache / f"whitening_unshrunk_{model.fingerprint()}.pt"
    if white.is_file():
        from netvlad.nn import PCAWhitening

        whitening = PCAWhitening(model.pool.output_dim, 4096)
        whitening.load_state_dict(torch.load(white, weights_only=True))
    else:
        whitening = fit_patch_whitening(model, left[::2], 4096, size=5, samples=5200, shrink=0.0)  # shrunk per preset
        torch.save(whitening.state_dict(), white)
    return model, whitening


def resized(model: PlaceModel, preprocessing: Preprocessing | None = None) -> PlaceModel:
    """The same weights with another input-size policy (the thumbnails are upscaled: the policy "longest" only
    shrinks, and a 2×1 map has no 5×5 window)."""
    if preprocessing is None:
        return model
    other = PlaceModel(dataclasses.replace(model.config, preprocessing=preprocessing), pretrained=False).eval()
    other.load_state_dict(model.state_dict())
    return other


@torch.no_grad()
def features(model: PlaceModel, paths: list[Path]) -> list[torch.Tensor]:
    """Feature maps ``(1, D, h, w)`` of each image, in ``paths`` order."""
    out: list[torch.Tensor | None] = [None] * len(paths)
    for indices, images in iter_images(model, paths, batch_size=4):
        for i, f in zip(indices, model.features(images).float(), strict=True):
            out[i] = f[None]
    return out


def sets(city: Path | None, every: int = 1, longest: int | None = None) -> dict:
    """{name: (database paths, query paths, positives per query[, preprocessing])} of the sets found; Gardens Point
    keeps every ``every``-th frame of each side (±2 frames of the walk stay the tolerance), at ``longest`` px."""
    found = {}
    gp = SHARED_DATA / "gardens_point"
    left, right = sorted((gp / "day_left").glob("*.jpg")), sorted((gp / "day_right").glob("*.jpg"))
    left, right, tolerance = left[::every], right[::every], 2 // every
    found[f"Gardens Point day_left→day_right (±2 frames{f', 1 frame in {every}' if every > 1 else ''}"
          f"{f', {longest} px' if longest else ''})"] = (
        left, right, [np.arange(max(0, i - tolerance), min(len(left), i + tolerance + 1)) for i in range(len(right))],
        *([Preprocessing("longest", (longest,))] if longest else []))
    names = [f"images-{i:05d}.png" for i in range(16010, 24001, 80)]  # the last third of the route, 100 places
    nord = SHARED_DATA / "nordland"
    found[f"Nordland summer→winter ({len(names)} places of the last third, 64×32 thumbnails upscaled to 640×320)"] = (
        [nord / "summer" / n for n in names], [nord / "winter" / n for n in names],
        [np.array([i]) for i in range(len(names))], Preprocessing("fixed", (320, 640)))
    tokyo = SHARED_DATA / "tokyo_pair"
    unrelated = left[::8] + [nord / "summer" / n for n in names[::4]]
    found[f"Tokyo night query among {len(unrelated)} unrelated + its day image"] = (
        [tokyo / "tokyo_db.png"] + unrelated, [tokyo / "tokyo_query.jpg"], [np.array([0])])
    if city is not None and (city / "city.json").is_file():
        data = open_dataset(city, split="test")
        conditions = query_conditions(data) or []
        keep = [i for i, c in enumerate(conditions) if c in ("night", "winter")]
        positives = data.positives(25.0)
        found[f"generated city night+winter queries (test split, 25 m, {len(keep)} queries)"] = (
            data.database.paths(), [data.queries.paths()[i] for i in keep], [positives[i] for i in keep])
    return found


def run_set(model, whitening, db, queries, positives, top, cache: Path, label: str, presets) -> dict:
    """Recall@1/5 of the global ranking, each preset and the fused variants; store bytes and seconds per image."""
    db_maps, q_maps = features(model, db), features(model, queries)
    with torch.no_grad():
        g_db = torch.cat([model.pool_features(f) for f in db_maps]).numpy()
        g_q = torch.cat([model.pool_features(f) for f in q_maps]).numpy()
    dist = np.linalg.norm(g_q[:, None] - g_db[None], axis=2)
    top = min(top, len(db))
    ranked = np.argsort(dist, axis=1, kind="stable")[:, :top]
    rows = {"global": recall_at_n(ranked, positives, (1, 5))}
    extra = {}
    for name in presets:
        folder = cache / f"{label}_{name}"
        fused, extra[name] = run_preset(model, whitening, name, db_maps, q_maps, ranked, dist, folder)
        rows[f"{name}, patch score alone (λ=0)"] = recall_at_n(fused[0.0], positives, (1, 5))
        for lam in FUSED:
            rows[f"{name} fused λ={lam}" + (" (default)" if lam == get_preset(name).global_weight else "")] = \
                recall_at_n(fused[lam], positives, (1, 5))
        print(f"  {name}: R@1 {rows[f'{name}, patch score alone (λ=0)'][1]:.1f} (λ=0), "
              f"{extra[name]['rerank_seconds_per_query']:.3f} s re-ranking per query", flush=True)
    return {"top": top, "recall": rows, "stores": extra, "num_queries": len(queries), "num_database": len(db)}


def run_preset(model, whitening, name: str, db_maps, q_maps, ranked, dist, folder: Path) -> tuple[dict, dict]:
    """One preset over every query's shortlist: ({λ: re-ranked rows (Q, top)}, store bytes, skips and seconds)."""
    preset = get_preset(name).with_global_weight(0.0)  # the patch score alone; fused below for each λ
    # the leading dims regularised as the command line's own fit of preset.dim dims is (ε = SHRINK × their mean λ)
    extractor = PatchExtractor(model, preset, shrink_whitening(whitening.crop(min(preset.dim, whitening.out_dim)),
                                                               SHRINK))
    store, db_seconds = patch_store(extractor, db_maps, folder)
    generator = torch.Generator().manual_seed(0)
    fused = {lam: np.zeros_like(ranked) for lam in (0.0, *FUSED)}
    skipped, q_seconds, rerank_seconds = 0, [], []
    for q, query_map in enumerate(q_maps):
        start = time.perf_counter()
        query = extractor.from_features(query_map)[0]
        middle = time.perf_counter()
        d = dist[q, ranked[q]]
        result = verify_shortlist(query, ranked[q], d, store.read, preset, generator)
        q_seconds.append(middle - start)
        rerank_seconds.append(time.perf_counter() - middle)
        skipped += result.skipped
        similarity = normalise(-torch.as_tensor(d, dtype=torch.float64)).numpy()
        for lam, out in fused.items():
            out[q] = ranked[q][np.argsort(-((1 - lam) * result.scores + lam * similarity), kind="stable")]
    return fused, {"bytes_per_image": store.bytes_per_image(), "skipped_sizes": skipped,
                   "grids": [list(g) for g in extractor.from_features(db_maps[0])[0].grids],
                   "patch_seconds_per_query_image": float(np.mean(q_seconds)),
                   "patch_seconds_per_database_image": db_seconds,
                   "rerank_seconds_per_query": float(np.mean(rerank_seconds))}


def patch_store(extractor: PatchExtractor, maps: list[torch.Tensor], folder: Path):
    """The float16 patch store of the database maps, written image by image and continued when interrupted (the
    4096-D preset takes minutes): -> (store, mean seconds per image of the patches computed in this run)."""
    folder = folder.with_name(f"{folder.name}_{len(maps)}")
    first = extractor.from_features(maps[0])[0]
    store = create_patch_store(extractor, [f"{i}" for i in range(len(maps))], folder, first.grids)
    seconds = []
    for i in store.stores[-1].pending():
        start = time.perf_counter()
        store.write(np.array([i]), [extractor.from_features(maps[i])[0]])
        seconds.append(time.perf_counter() - start)
    return store, float(np.mean(seconds)) if seconds else float("nan")


# Costs: re-ranking seconds per query on random patch stores, peak memory of one VGG16 map's patch descriptors
# (in a fresh process), store bytes per 640×480 VGG16 image.
PRESETS = ("performance", "speed", "storage")


def fill_store(extractor, patches: list, folder: Path):
    """A float16 patch store of ``patches`` (rewritten each run)."""
    shutil.rmtree(folder, ignore_errors=True)
    store = create_patch_store(extractor, [f"{i}" for i in range(len(patches))], folder, patches[0].grids)
    for i0 in range(0, len(patches), 16):
        part = patches[i0:i0 + 16]
        store.write(np.arange(i0, i0 + len(part)), part)
    return store


def timing(count: int, top: int, cache: Path, grid=(15, 20)) -> dict:
    """Mean thread CPU seconds to re-rank a top-``top`` shortlist per query, per preset, side by side, on stores of
    random unit patches shaped as a 640×480 image's MobileNetV2 map (``grid`` cells): reading, matching and scoring
    cost the same whatever the values (RANSAC draws and reprojects all padded matches)."""
    from netvlad.match.verify.patches import Patches
    from netvlad.nn.functional import l2_normalize

    gen = torch.Generator().manual_seed(0)

    def random_patches(preset):
        grids = [window_grid(*grid, s, preset.stride) for s in preset.sizes]
        return Patches([l2_normalize(torch.randn(r * c, preset.dim, generator=gen), dim=1) for r, c in grids], grids)

    class Fake:  # what create_patch_store reads from an extractor
        def __init__(self, preset):
            from netvlad.nn import PCAWhitening

            self.preset, self.dim, self.whitening = preset, preset.dim, PCAWhitening(preset.dim, preset.dim)
            self.model = type("M", (), {"fingerprint": staticmethod(lambda: "random")})()

    out = {}
    for name in PRESETS:
        preset = get_preset(name)
        store = fill_store(Fake(preset), [random_patches(preset) for _ in range(top)], cache / f"timing_{name}")
        queries = [random_patches(preset) for _ in range(count)]
        start = time.thread_time()  # CPU time: the machine may be shared
        for p in queries:
            verify_shortlist(p, np.arange(top), np.linspace(0, 1, top), store.read, preset, gen)
        out[name] = (time.thread_time() - start) / count
        shutil.rmtree(cache / f"timing_{name}", ignore_errors=True)
    return out


def memory_child(name: str) -> None:
    """Print the peak resident MiB added by the patch descriptors of preset ``name`` for one 480×640 VGG16 map."""
    p = get_preset(name)
    torch.manual_seed(0)
    x, weight, centroids = torch.randn(1, 512, 30, 40).relu_(), torch.randn(64, 512), torch.randn(64, 512)
    projection = (torch.randn(p.dim, 64 * 512).div_(181.0), torch.zeros(p.dim))  # in place: no 2nd copy at start
    with torch.no_grad():  # warm-up on a tiny map: the kernels' code pages are not the layer's memory
        patch_netvlad(x[..., :9, :9], weight, None, centroids, 8, p.stride, True, projection)
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak (VmHWM) to the current resident size
    base = _status_kib("VmRSS")
    with torch.no_grad():
        for size in p.sizes:
            patch_netvlad(x, weight, None, centroids, size, p.stride, True, projection)
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - base) / 1024}))


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field, KiB."""
    line = next(t for t in Path("/proc/self/status").read_text().splitlines() if t.startswith(field + ":"))
    return int(line.split()[1])


def memory(name: str) -> float:
    """:func:`memory_child` in a fresh subprocess (the whitening matrix itself, the model's, is not counted)."""
    child = "import sys\nfrom benchmarks.verify import memory_child\nmemory_child(sys.argv[1])"
    out = subprocess.run([sys.executable, "-c", child, name], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout
    return json.loads(out.splitlines()[-1])["peak_mib"]


def store_bytes(preset: str, grid: tuple[int, int]) -> int:
    """Patch store bytes per image for a ``grid`` (rows, cols) feature map: float16 rows, each a 2-value grid header
    and the windows' descriptors, per patch size."""
    p = get_preset(preset)
    return sum(2 * (2 + int(np.prod(window_grid(*grid, s, p.stride))) * p.dim) for s in p.sizes)


def vgg_bytes(preset: str) -> int:
    """Patch store bytes per 480×640 image for a VGG16 map (30×40 cells)."""
    return store_bytes(preset, (30, 40))


def print_costs(report: dict, top: int) -> None:
    seconds = report["seconds_per_query"]
    print(f"Re-ranking a top {top} (thread CPU time: reading the candidates' float16 rows, mutual nearest "
          "neighbours, scoring; the query's own patches excluded; random patch stores shaped as a 640×480 image's "
          "MobileNetV2 map), store size, and the peak memory of one image's patch descriptors (a 30×40×512 map, "
          "K = 64):\n")
    print(f"| preset | re-rank time per query, top {top} (s) | vs `speed` | store bytes per image, 640×480 VGG16 map | "
          "store bytes per image, MobileNetV2 640×360 | peak memory (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in PRESETS:
        ratio = seconds[name] / seconds["speed"]
        versus = "1×" if name == "speed" else f"{ratio:.1f}× slower" if ratio >= 1 else f"{1 / ratio:.1f}× faster"
        print(f"| {name} | {seconds[name]:.3f} | {versus} | {report['store_bytes_vgg16_480x640'][name]:,} | "
              f"{store_bytes(name, (12, 20)):,} | {report['memory_mib_vgg16_480x640'][name]:.0f} |")


def fragment_name(args: argparse.Namespace) -> str:
    """``reranking-cost`` for ``--costs-only``, else ``verify``."""
    return "reranking-cost" if args.costs_only else "verify"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--top", type=int, default=20, help="global shortlist re-ranked for the recall table")
    parser.add_argument("--timing-top", type=int, default=100)
    parser.add_argument("--timing-queries", type=int, default=2)
    parser.add_argument("--performance-on", default="",
                        help="sets (label substrings, comma-separated) also re-ranked with the performance preset "
                             "(4096-D: about 2.3 s of projection per 640×360 image on one idle core here; its "
                             "database patches are kept in --cache and a rerun continues them)")
    parser.add_argument("--city", type=Path, default=None, help="a generated city (netvlad generate) to add")
    parser.add_argument("--cache", type=Path, default=work_dir("verify"),
                        help="model, clusters, whitening and patch stores, reused by later runs")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--limit", type=int, default=None, help="at most this many queries per set (smoke runs)")
    parser.add_argument("--sets", default="", help="only the sets whose label contains one of these, comma-separated")
    parser.add_argument("--every", type=int, default=1, help="Gardens Point: every N-th frame of each side")
    parser.add_argument("--longest", type=int, default=None,
                        help="Gardens Point: images resized to this many px on the longest side (default 640)")
    parser.add_argument("--no-costs", action="store_true", help="skip the timing and memory measurements")
    parser.add_argument("--costs-only", action="store_true",
                        help="only the timing and memory measurements (no model, no sets): reranking-cost.md")
    add_results_option(parser)


def run(args: argparse.Namespace) -> None:
    """Run the benchmark with the parsed options."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.costs_only and args.no_costs:
        raise SystemExit("verify: --costs-only and --no-costs leave nothing to run; drop one")
    args.cache.mkdir(parents=True, exist_ok=True)
    report = {"store_bytes_vgg16_480x640": {p: vgg_bytes(p) for p in PRESETS}, "sets": {}}
    if not args.no_costs:
        report["memory_mib_vgg16_480x640"] = {p: round(memory(p), 1) for p in PRESETS}
        report["seconds_per_query"] = timing(args.timing_queries, args.timing_top, args.cache)
        print_costs(report, args.timing_top)
    if args.costs_only:
        return
    model, whitening = model_and_whitening(args.cache)
    for label, (db, queries, positives, *resize) in sets(args.city, args.every, args.longest).items():
        if args.sets and not any(part in label for part in args.sets.split(",")):
            continue
        queries, positives = queries[:args.limit], positives[:args.limit]
        wanted = [part for part in args.performance_on.split(",") if part]  # comma-separated, like --sets
        presets = ("speed", "storage") + (("performance",) if any(part in label for part in wanted) else ())
        report["sets"][label] = run_set(resized(model, *resize), whitening, db, queries, positives, args.top,
                                        args.cache,
                                        f"{label.split()[0].lower()}{args.every}_{args.longest}", presets)
        print_set(label, report["sets"][label])
        if args.out:
            args.out.write_text(json.dumps(report, indent=1, default=float))


def print_set(label: str, entry: dict) -> None:
    print(f"\n{label}: {entry['num_queries']} queries, {entry['num_database']} database images, top {entry['top']}")
    print("| ranking | R@1 | R@5 |\n|---|---:|---:|")
    for name, rec in entry["recall"].items():
        print(f"| {name} | {rec[1]:.1f} | {rec[5]:.1f} |")
    print("patch store bytes per image: " + ", ".join(
        f"{n} {s['bytes_per_image']:,} (grids {s['grids']}, {s['skipped_sizes']} sizes skipped)"
        for n, s in entry["stores"].items()))
    print(f"seconds per query (top {entry['top']}): " + ", ".join(
        f"{n} {s['patch_seconds_per_query_image']:.3f} patches + {s['rerank_seconds_per_query']:.3f} re-ranking"
        for n, s in entry["stores"].items()))

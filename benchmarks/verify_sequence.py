"""Spatial re-ranking composed with sequence matching, both orders side by side on Gardens Point day_left → day_right.

``sequence first`` (what ``netvlad evaluate --sequence L --verify PRESET`` does): SeqSLAM over each frame's global
shortlist, then its top N re-ranked by patches (fused with the sequence scores, λ). ``verify first``: each frame's
global top N re-ranked by patches (fused with the global distances), then SeqSLAM over that shortlist. The model is
the ``verify`` benchmark's (MobileNetV2 ImageNet + NetVLAD K=16, k-means on day_left, 640 px; cached in ``--cache``).

    python -m benchmarks verify-sequence [--length 5] [--top 20] [--preset speed storage] [--cache DIR]
                                         [--out FILE.json]

One table per preset, in the order given, on the same descriptors and sequence ranking.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import torch

from benchmarks.common import SHARED_DATA, add_results_option, work_dir
from benchmarks.verify import model_and_whitening
from netvlad.data import open_dataset
from netvlad.eval.sequence import evaluate_sequences, sequence_ranking
from netvlad.eval.verified import evaluate_verified
from netvlad.eval.verified_sequence import verify_sequence
from netvlad.extract.store import DescriptorStore
from netvlad.match.sequence import DEFAULT_METHOD, SequenceConfig
from netvlad.match.verify import get_preset, patch_extractor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's options."""
    parser.add_argument("--length", type=int, default=5, help="sequence length L (query frames)")
    parser.add_argument("--top", type=int, default=20, help="candidates re-ranked, and SeqSLAM's shortlist")
    parser.add_argument("--preset", nargs="+", default=["speed"], help="re-ranking presets, one table each")
    parser.add_argument("--cache", type=Path, default=work_dir("verify"),
                        help="model, clusters, whitening and patch stores, reused by later runs")
    parser.add_argument("--out", type=Path, default=None)
    add_results_option(parser)


def run(args: argparse.Namespace) -> str:
    """Run the benchmark with the parsed options."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    presets = [get_preset(name) for name in args.preset]  # an unknown name refused before any work
    args.cache.mkdir(parents=True, exist_ok=True)
    model, _ = model_and_whitening(args.cache)  # the preset's whitening is fitted on database patches, as the CLI
    dataset = open_dataset(SHARED_DATA / "gardens_point", database="day_left", queries="day_right", frame_tolerance=2)
    store = args.cache / f"sequence_store_{model.fingerprint()}"
    config = SequenceConfig(length=args.length, shortlist=args.top, propagate=5)
    ns = (1, 5)
    single, seq = evaluate_sequences(model, dataset, config, ns=ns, store_dir=store)
    db = DescriptorStore.open(store / "database").load()
    queries = DescriptorStore.open(store / "queries").load()
    tables, results = [], {}
    for preset in presets:
        rows = {"global (single frame)": single.recall, f"sequence {seq.label}": seq.recall}
        extractor = patch_extractor(model, preset, dataset.database.paths())
        seq_first = verify_sequence(extractor, dataset, single.positives, seq, store, args.top, ns)
        rows[f"sequence first: {seq.label}, then {preset.name} (top {args.top})"] = seq_first.recall
        verified = evaluate_verified(extractor, dataset, single.positives, store, args.top, ns)
        rows[f"{preset.name} (top {args.top}), single frame"] = verified.recall
        shortlists = dataclasses.replace(single, ranked=verified.ranking.ranked)
        then = sequence_ranking(DEFAULT_METHOD, db, queries, dataset, shortlists, config, ns)
        rows[f"verify first: {preset.name} (top {args.top}), then {seq.label}"] = then.recall
        lines = [f"Gardens Point day_left → day_right, ±2 frames: {len(queries)} queries, {len(db)} database images, "
                 f"preset {preset.name} (λ = {preset.global_weight:g})", "", "| ranking | R@1 | R@5 |",
                 "|---|---:|---:|"]
        lines += [f"| {row} | {recall[1]:.1f} | {recall[5]:.1f} |" for row, recall in rows.items()]
        tables.append("\n".join(lines))
        results[preset.name] = {row: {str(n): r for n, r in recall.items()} for row, recall in rows.items()}
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return "\n\n".join(tables)

"""``--verify PRESET`` and ``--verify-top N``: Patch-NetVLAD spatial re-ranking of a command's global shortlist."""

from __future__ import annotations

import argparse
from pathlib import Path

from netvlad.cli.common import number
from netvlad.limits import COUNT, POSITIVE, Limit
from netvlad.match.verify.presets import VERIFY_PRESETS


def add_verify_args(parser, top_default: int = 100) -> None:
    """Add the spatial re-ranking options (choices from the torch-free preset registry)."""
    group = parser.add_argument_group("spatial re-ranking (Patch-NetVLAD)")
    group.add_argument("--verify", metavar="PRESET", default=None, choices=VERIFY_PRESETS.names(),
                       help="re-rank the global shortlist by patch matching: "
                            + "; ".join(f"{n}: {VERIFY_PRESETS.get(n).description}" for n in VERIFY_PRESETS.names()))
    group.add_argument("--verify-top", type=number(COUNT), default=top_default, metavar="N",
                       help=f"candidates re-ranked per query: the global ranking's, or under --sequence the "
                            f"sequence ranking's (default {top_default}; clamped to the database, or to --shortlist)")
    group.add_argument("--verify-global-weight", type=number(Limit(0, 1)), default=None, metavar="λ",
                       help="weight of the global similarity fused with the patch score, 0..1 (default: the "
                            "preset's, 0.75, chosen by measurement; 0: the patch score alone)")
    group.add_argument("--verify-ransac-threshold", type=number(POSITIVE), nargs="+", default=None, metavar="CELLS",
                       help="RANSAC inlier distance in feature-map cells: one for every patch size, or one per size "
                            "(default 1.5 for every size, Patch-NetVLAD's 24 pixels for VGG16)")


def preset_from_args(args: argparse.Namespace):
    """The chosen preset with ``--verify-global-weight`` and ``--verify-ransac-threshold`` applied (None without
    ``--verify``)."""
    if not getattr(args, "verify", None):
        return None
    preset = VERIFY_PRESETS.get(args.verify)
    weight = getattr(args, "verify_global_weight", None)
    preset = preset if weight is None else preset.with_global_weight(weight)
    thresholds = getattr(args, "verify_ransac_threshold", None)
    if thresholds:
        if preset.scorer != "ransac":
            from netvlad.errors import BadInputError

            raise BadInputError(f"--verify-ransac-threshold would be ignored: preset {preset.name} scores by "
                                "rapid spatial scoring, not RANSAC; drop it or use --verify performance")
        if len(thresholds) not in (1, len(preset.sizes)):
            from netvlad.errors import BadInputError

            raise BadInputError(f"--verify-ransac-threshold takes one value or one per patch size {preset.sizes}, "
                                f"got {len(thresholds)}")
        preset = preset.with_thresholds(tuple(thresholds))
    return preset


def check_verify_model(args: argparse.Namespace, model) -> None:
    """Refuse ``--verify`` with a model whose pooling is not NetVLAD (or without a store), before any extraction."""
    if getattr(args, "verify", None):
        from netvlad.errors import BadInputError
        from netvlad.match.verify.patches import require_netvlad

        if hasattr(args, "store") and args.store is None:
            raise BadInputError("--verify needs --store DIR: the database's patch descriptors are kept there "
                                "(a rerun reuses them)")
        require_netvlad(model)


def verify_evaluation(args: argparse.Namespace, model, dataset, result, device, sequence=None):
    """Re-rank the evaluation's shortlist (the ``sequence`` ranking's under ``--sequence``) and print its table (None
    without ``--verify``)."""
    preset = preset_from_args(args)
    if preset is None:
        return None
    if sequence is not None:
        from netvlad.eval.verified_sequence import verify_sequence

        verified = verify_sequence(model, dataset, result.positives, sequence, preset, args.store, args.verify_top,
                                   args.recall, device)
    else:
        from netvlad.eval.verified import evaluate_verified

        verified = evaluate_verified(model, dataset, result.positives, preset, args.store, args.verify_top,
                                     args.recall, device)
    print(verified.table())
    summary = verified.summary()["verify"]
    print(f"re-ranking {preset.name}: {summary['rerank_seconds_per_query'] * 1000:.1f} ms per query (top "
          f"{verified.top}), patch store {summary['store_bytes_per_image'] / 1e6:.3f} MB per image"
          + (f", {summary['skipped_sizes']} (image, size) pairs skipped: images smaller than the patch"
             if summary["skipped_sizes"] else ""))
    return verified


def write_verified(verified, dataset, result, output: Path) -> dict:
    """The per-query CSV beside ``output`` (``<stem>_verified.csv``); returns the JSON keys to add."""
    if verified is None:
        return {}
    from netvlad.eval.verified import write_verified_csv

    path = write_verified_csv(verified, dataset, result.positives, Path(f"{Path(output).with_suffix('')}_verified.csv"))
    print(f"wrote {path}")
    return verified.summary()


def verified_folder_ranking(args: argparse.Namespace, model, ranking, device):
    """``retrieve --verify``: the folder ranking re-ranked to its top ``-k`` (patches kept in ``--out/patches``)."""
    from netvlad.eval.verified_folders import verify_folder_ranking

    ranking, verified = verify_folder_ranking(model, preset_from_args(args), ranking, args.k, args.verify_top,
                                              Path(args.out) / "patches", device)
    _print_cost(args.verify, verified)
    return ranking


def verified_index_search(args: argparse.Namespace, index, paths, descriptors, device):
    """``query --verify``: (distances, rows) ``(Q, k)`` of the index search re-ranked (patches in the index folder)."""
    from netvlad.eval.verified_folders import verify_index_search

    return verify_index_search(index, paths, descriptors, preset_from_args(args), args.verify_top, args.k, device)


def _print_cost(name: str, verified) -> None:
    seconds = float(verified.seconds.mean()) if len(verified.seconds) else 0.0
    print(f"re-ranked with {name}: {seconds * 1000:.1f} ms per query, patch store "
          f"{verified.bytes_per_image / 1e6:.3f} MB per image"
          + (f", {verified.skipped} (image, size) pairs skipped (smaller than the patch)" if verified.skipped else ""))

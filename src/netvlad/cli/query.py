"""`netvlad query IMAGE... --index DIR`: localise photos (or a ROS bag's keyframes) against a saved index."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from netvlad.cli.options import (
    add_bag_args,
    add_device_args,
    add_engine_arg,
    add_model_args,
    add_search_args,
    add_verify_args,
    check_verify_model,
    engine_from_args,
    existing,
    index_config_from_args,
    max_memory_from_args,
    number,
)
from netvlad.limits import NEIGHBOURS
from netvlad.places.positions import POSITION_ESTIMATORS

logger = logging.getLogger(__name__)


def format_result(result, positions: str = "utm", spacing: float = 1.0) -> str:
    """Human-readable lines for one :class:`netvlad.places.localise.QueryResult`; ``positions`` is the index's kind:
    ``utm`` (metres), ``frames`` (a sequence: positions are frame × ``spacing`` metres) or ``none``."""
    def where(position, digits: int = 0) -> str:
        if positions == "frames":
            return f"frame {position[0] / spacing:.{digits}f}"
        return f"position E {position[0]:.1f} N {position[1]:.1f}"

    lines = [f"{result.query}"]
    for rank, match in enumerate(result.matches, 1):
        shown = "" if positions == "none" else f"  {where(match.position)}"
        lines.append(f"  {rank:2d}. {match.name}  distance {match.distance:.4f}{shown}")
    if positions == "none":
        lines.append("  no position estimate: the index was built from a folder without positions")
        return "\n".join(lines)
    latlon = result.latlon()
    at = f"  (lat {latlon[0]:.6f}, lon {latlon[1]:.6f})" if latlon else ""
    lines.append(f"  estimated {where(result.position, 0 if result.method == 'top1' else 1)} ({result.method})"
                 + at)
    return "\n".join(lines)


def query(args: argparse.Namespace) -> int:
    """Localise each photo against the index and print (or JSON-dump) the matches."""
    from netvlad.cli.options import model_from_args, pick_device, refuse_model_with_index
    from netvlad.errors import BadInputError
    from netvlad.extract.descriptors import extract_descriptors
    from netvlad.places.localise import PlaceIndex

    refuse_model_with_index(args)
    device = pick_device(args.device)
    index = PlaceIndex.load(args.index, index_config_from_args(args, device), max_memory_from_args(args))
    model = index.model
    if args.model:
        model = model_from_args(args)
        index.check_model(model)
    paths = query_images(args)
    descriptors = extract_descriptors(model, paths, batch_size=args.batch_size, workers=0, device=device,
                                      progress=not args.no_progress, engine=engine_from_args(args))
    if descriptors.shape[1] != index.store.dim:
        raise BadInputError(f"the model gives {descriptors.shape[1]}-D descriptors, the index holds "
                            f"{index.store.dim}-D ones", path=args.index)
    if args.verify:
        check_verify_model(args, model)
        from netvlad.cli.options import preset_from_args
        from netvlad.eval.verified_folders import verify_index_search

        found = verify_index_search(index, paths, descriptors, preset_from_args(args), args.verify_top, args.k, device)
        results = index.results([str(p) for p in paths], *found, args.method)
    else:
        results = index.localise([str(p) for p in paths], descriptors, k=args.k, method=args.method)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        kind, spacing = index.meta.get("positions", "utm"), index.meta.get("spacing", 1.0)
        print("\n".join(format_result(r, kind, spacing) for r in results))
    return 0


def register(subparsers) -> None:
    """Add ``netvlad query``."""
    parser = subparsers.add_parser("query", help="localise photos against an index",
                                   description="Top-k database images for each photo, with distances and "
                                               "positions, and an estimated position.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", type=existing("path", "query image or bag"),
                        help="query photos, or ROS bags (their --image-topic keyframes, in stamp order)")
    parser.add_argument("--index", type=existing("folder", "index folder"), required=True,
                        help="folder written by `netvlad index build`")
    parser.add_argument("-k", type=number(NEIGHBOURS), default=5,
                        help="matches per photo (clamped to the database size)")
    parser.add_argument("--method", default="top1", choices=POSITION_ESTIMATORS.names(),
                        help="position estimate: " + POSITION_ESTIMATORS.describe())
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_search_args(parser.add_argument_group("search"))
    add_bag_args(parser.add_argument_group("ROS bags"), positions=False)
    add_verify_args(parser)
    add_model_args(parser)
    add_device_args(parser)
    add_engine_arg(parser)
    parser.set_defaults(func=query)


def query_images(args: argparse.Namespace) -> list[Path]:
    """The photos to localise: each IMAGE, or a bag's keyframes; bag options without a bag are refused."""
    from netvlad.data.bags.bag import is_bag
    from netvlad.data.bags.keyframes import KeyframeRule
    from netvlad.data.bags.run import BagOptions, read_run
    from netvlad.errors import BadInputError

    flags = [f"--{k.replace('_', '-')}" for k in ("image_topic", "every", "min_interval")
             if getattr(args, k) is not None]
    if flags and not any(is_bag(Path(p)) for p in args.images):
        raise BadInputError(f"{', '.join(flags)} apply to ROS bags only; no IMAGE is a bag", hint=f"drop {flags[0]}")
    paths = []
    for path in map(Path, args.images):
        if not is_bag(path):
            if path.is_dir():
                raise IsADirectoryError(f"{path}: is a folder; give the query image itself (or a ROS bag)")
            paths.append(path)
            continue
        rule = KeyframeRule(args.every or 1, args.min_interval)
        run = read_run(path, BagOptions(args.image_topic, rule=rule, need_positions=False))
        paths += [run.bag / name for name in run.names]
    return paths

"""`netvlad retrieve DATABASE_FOLDER QUERY_FOLDER`: top-k database images per query, no positions needed."""

from __future__ import annotations

import argparse
from pathlib import Path

from netvlad.cli.options import (
    add_cluster_images_arg,
    add_device_args,
    add_engine_arg,
    add_model_args,
    add_pictures_arg,
    add_verify_args,
    check_verify_model,
    engine_from_args,
    existing,
    number,
)
from netvlad.limits import NEIGHBOURS


def run(args: argparse.Namespace) -> int:
    """Rank QUERY_FOLDER's photos against DATABASE_FOLDER's and write the tables, pairs and picture."""
    from netvlad.cli.options import clustering, model_from_args, model_label, pick_device
    from netvlad.data.readers.common import list_images
    from netvlad.eval.folder_ranking import rank_folders, retrieve_folders, write_ranking
    from netvlad.extract.clusters import cluster_if_off_the_shelf

    database = Path(args.database_folder)
    list_images(database)  # a missing or imageless folder fails here, before any model is built
    list_images(Path(args.query_folder))
    device = pick_device(args.device)
    model = model_from_args(args)
    check_verify_model(args, model)
    cluster_if_off_the_shelf(model, [database / n for n in list_images(database)], device=device, **clustering(args))
    label = model_label(args, model)
    extract = dict(batch_size=args.batch_size, workers=args.workers, device=device, progress=not args.no_progress,
                   skip_bad=args.skip_bad, engine=engine_from_args(args))
    if args.verify:
        from netvlad.cli.options import preset_from_args
        from netvlad.eval.verified_folders import verify_folder_ranking

        ranking = rank_folders(model, database, args.query_folder, max(args.k, args.verify_top), **extract)
        ranking, verified = verify_folder_ranking(model, preset_from_args(args), ranking, args.k, args.verify_top,
                                                  Path(args.out) / "patches", device)
        print_cost(args.verify, verified)
        paths = write_ranking(ranking, args.out, label, args.pictures)
    else:
        paths = retrieve_folders(model, database, args.query_folder, args.out, k=args.k,
                                 pictures=args.pictures, label=label, **extract)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def print_cost(name: str, verified) -> None:
    """One line: the re-ranking's time per query and patch store per image."""
    seconds = float(verified.seconds.mean()) if len(verified.seconds) else 0.0
    print(f"re-ranked with {name}: {seconds * 1000:.1f} ms per query, patch store "
          f"{verified.bytes_per_image / 1e6:.3f} MB per image"
          + (f", {verified.skipped} (image, size) pairs skipped (smaller than the patch)" if verified.skipped else ""))


def register(subparsers) -> None:
    """Add ``netvlad retrieve``."""
    parser = subparsers.add_parser(
        "retrieve", help="top-k database images per query, for two folders of photos (no GPS)",
        description="Rank every photo under QUERY_FOLDER against every photo under DATABASE_FOLDER (no positions "
                    "needed): retrieval.csv/.json, an hloc pairs file (`query database` per line, names relative to "
                    "the folders' common parent) and a picture of sampled retrievals. Give the same folder twice "
                    "for SfM pairs (each image's own match is left out).")
    parser.add_argument("database_folder", metavar="DATABASE_FOLDER", type=existing("folder", "database folder"),
                        help="folder of database photos (recursive)")
    parser.add_argument("query_folder", metavar="QUERY_FOLDER", type=existing("folder", "query folder"),
                        help="folder of query photos (recursive)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("-k", type=number(NEIGHBOURS), default=10, help="database images kept per query (default 10)")
    add_pictures_arg(parser)
    parser.add_argument("--skip-bad", action="store_true", help="skip (and list) undecodable images")
    add_cluster_images_arg(parser)
    add_verify_args(parser)
    add_model_args(parser)
    add_device_args(parser)
    add_engine_arg(parser)
    parser.set_defaults(func=run)

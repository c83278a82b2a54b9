"""The dataset arguments every command shares: ``DATASET`` plus how to read it."""

from __future__ import annotations

import argparse

from netvlad.cli.common import existing, number
from netvlad.data.formats import READERS
from netvlad.limits import NON_NEGATIVE_INT, POSITIVE


def add_dataset_args(parser: argparse.ArgumentParser, positional: bool = True, optional: bool = False) -> None:
    """Add ``DATASET`` (or ``--dataset`` when ``positional`` is False; may be left out when ``optional``) and the
    reader options."""
    if positional:
        parser.add_argument("dataset", metavar="DATASET", nargs="?" if optional else None,
                            type=existing(what="dataset"),
                            help="dataset folder or file: DVGB folder, .mat dbStruct, .csv manifest, EXIF photo "
                                 "folder, or a sequence folder with --database/--queries")
    else:
        parser.add_argument("--dataset", required=True, metavar="DATASET", type=existing(what="dataset"),
                            help="dataset folder or file")
    group = parser.add_argument_group("dataset")
    group.add_argument("--format", choices=READERS.names(), default=None,
                       help="force a format (default: detect): " + READERS.describe())
    group.add_argument("--split", default=None, help="DVGB / .mat split: train, val or test (default: test)")
    group.add_argument("--database", default=None, metavar="FOLDER",
                       help="database sub-folder (sequences: e.g. summer; .mat: under --image-root)")
    group.add_argument("--queries", default=None, metavar="FOLDER", help="query sub-folder (e.g. winter)")
    group.add_argument("--image-root", default=None, metavar="DIR", type=existing("folder"),
                       help=".mat / CSV image root (default: its folder)")
    group.add_argument("--frame-tolerance", type=number(NON_NEGATIVE_INT), default=None, metavar="K",
                       help="sequences: ±K frames count as correct (default 0; Gardens Point uses 2)")
    group.add_argument("--spacing", type=number(POSITIVE), default=None, metavar="M",
                       help="sequences: metres between frames (default 25/(K+1))")
    group.add_argument("--skip-bad", action="store_true", help="skip (and count) bad images and entries")


def dataset_options(args: argparse.Namespace) -> dict:
    """The :func:`netvlad.data.open_dataset` keyword arguments the dataset flags give."""
    return dict(format=args.format, split=args.split, database=args.database, queries=args.queries,
                image_root=args.image_root, frame_tolerance=args.frame_tolerance, spacing=args.spacing,
                skip_bad=args.skip_bad)


def check_pair(args: argparse.Namespace) -> None:
    """Refuse ``--database`` without ``--queries`` (or the reverse): the same one-line error in every command."""
    database, queries = getattr(args, "database", None), getattr(args, "queries", None)
    if (database is None) != (queries is None):
        given, missing = ("--database", "--queries") if database is not None else ("--queries", "--database")
        from netvlad.errors import BadInputError

        raise BadInputError(f"{given} {database or queries} without {missing}: name both sub-folders (the "
                            "database and the queries, e.g. --database day_left --queries day_right)")


def dataset_from_args(args: argparse.Namespace):
    """Open the dataset the arguments describe (a :class:`netvlad.data.GeoDataset`)."""
    from netvlad.data import open_dataset


    check_pair(args)
    return open_dataset(args.dataset, **dataset_options(args))

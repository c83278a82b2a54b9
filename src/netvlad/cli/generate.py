"""`netvlad generate`: write the synthetic city as a DVGB dataset."""

from __future__ import annotations

import argparse
import logging
import os

from netvlad.cli.options import number, output
from netvlad.data.synthetic.city_config import CITY_ROUTES, SIZES
from netvlad.limits import NON_NEGATIVE_INT

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add ``generate``."""
    parser = subparsers.add_parser("generate", help="generate the synthetic geo-tagged city (a DVGB dataset)",
                                   description="Render a procedural city (day database; dusk, night, winter, "
                                               "autumn, rain and fog queries) into train/val/test splits.")
    parser.add_argument("--out", required=True, type=output("folder"), help="output folder (the dataset root)")
    parser.add_argument("--seed", type=number(NON_NEGATIVE_INT), default=0, help="city seed (default 0)")
    parser.add_argument("--size", default="default", choices=sorted(SIZES),
                        help="city size: tiny (tests), small (768 images), default (the demo), large (20,961 images)")
    parser.add_argument("--workers", type=number(NON_NEGATIVE_INT), default=min(2, os.cpu_count() or 1),
                        help="rendering processes (0 or 1: render in this process)")
    parser.add_argument("--overwrite", action="store_true", help="replace a different dataset already in --out")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bar (shown only when standard error is a terminal)")
    parser.add_argument("--route", default=None, choices=CITY_ROUTES.names(),
                        help="write a stream for `netvlad stream` instead (OUT/frames with frames.csv): loop = "
                             "one drive that revisits streets under other conditions")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render the city and print where it went."""
    from netvlad.data.synthetic import CityConfig, generate_city

    config = CityConfig.preset(args.size, seed=args.seed)
    if args.route:
        from netvlad.data.synthetic.loop import write_loop_route

        frames = write_loop_route(config, args.out)
        print(f"{args.route} route of {len(list(frames.glob('*.jpg')))} frames written to {frames}")
        return 0
    root = generate_city(config, args.out, progress=not args.no_progress, overwrite=args.overwrite,
                         workers=max(1, args.workers))
    print(f"city written to {root} (DVGB layout: {root / 'images'}/{{train,val,test}}/{{database,queries}})")
    return 0

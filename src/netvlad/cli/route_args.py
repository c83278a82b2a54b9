"""``netvlad data route FIRST SECOND --out DIR``: two traverses laid out as one stream with ground truth."""

from __future__ import annotations

import argparse

from netvlad.cli.common import existing, number, output
from netvlad.limits import COUNT, POSITIVE


def add_route_command(commands) -> None:
    """Add ``data route`` to the ``data`` sub-commands."""
    route = commands.add_parser("route", help="lay out two traverses (e.g. day_left then day_right) as one stream",
                                description="Write FIRST's frames then SECOND's as one stream (frames/ with a "
                                            "frames.csv of times and positions along the route), so that "
                                            "`netvlad stream` finds the revisits and scores them.")
    route.add_argument("first", type=existing("folder", "first traverse"), help="first traverse (frame folder)")
    route.add_argument("second", type=existing("folder", "second traverse"),
                       help="second traverse: the same frame names for the same places")
    route.add_argument("--out", required=True, type=output("folder"), help="output folder (OUT/frames)")
    route.add_argument("--every", type=number(COUNT), default=1, help="keep one place in N")
    route.add_argument("--limit", type=number(COUNT), default=None, help="keep the first N places (after --every)")
    route.add_argument("--fps", type=number(POSITIVE), default=1.0, help="stream frames per second (times)")
    route.add_argument("--spacing", type=number(POSITIVE), default=1.0,
                       help="metres between neighbouring places (positions along the route)")
    route.add_argument("--copy", action="store_true", help="copy the images instead of symlinking them")
    route.set_defaults(func=run_route)


def run_route(args: argparse.Namespace) -> int:
    """Write the route and say where."""
    from netvlad.data.route import RouteConfig, write_route

    config = RouteConfig(every=args.every, limit=args.limit, fps=args.fps, spacing=args.spacing, copy=args.copy)
    frames = write_route(args.first, args.second, args.out, config)
    count = sum(1 for p in frames.iterdir() if p.name != "frames.csv")
    print(f"wrote a route of {count} frames ({args.first.name} then {args.second.name}) to {frames}")
    return 0

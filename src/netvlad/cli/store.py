"""`netvlad store verify DIR`: check every row of the descriptor stores in DIR; damaged rows become pending."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add ``netvlad store verify``."""
    parser = subparsers.add_parser("store", help="check descriptor stores (sizes and per-row checksums)")
    commands = parser.add_subparsers(dest="store_command", metavar="STORE_COMMAND", required=True)
    verify = commands.add_parser(
        "verify", help="check every row of the stores in DIR; mark damaged or lost rows pending",
        description="Check each descriptor store in DIR (DIR itself, or the stores one or two levels below it, as "
                    "`evaluate --store` and `index build` write them): each array's size against store.json and "
                    "each done row against its CRC32. Damaged or lost rows are marked pending; the command that "
                    "extracted the store (`netvlad extract`, `evaluate --store`, `index build`) extracts them again. "
                    "Exit status 1 when anything was damaged.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    verify.add_argument("folder", metavar="DIR", type=Path, help="a descriptor store, or a folder holding stores")
    verify.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Verify every store in ``args.folder``: 0 when all rows proved themselves, 1 when some became pending."""
    from netvlad.extract.store import verify_stores

    checks = verify_stores(args.folder)
    for check in checks:
        logger.info("%s: %d rows, %d done, %d pending%s%s", check.folder, check.rows, check.done, check.pending,
                    f"; repaired {', '.join(check.repaired)}" if check.repaired else "",
                    f"; {check.failed} row(s) failed their checksum" if check.failed else "")
        if not check.checksummed:
            logger.warning("%s: written before row checksums existed; its rows cannot be verified", check.folder)
    if any(check.damaged for check in checks):
        logger.warning("damaged rows are pending now: run the command that extracted the store again to extract them")
        return 1
    return 0

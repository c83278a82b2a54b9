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


def stores_in(folder: Path) -> list[Path]:
    """The descriptor stores at ``folder`` or one or two levels below it."""
    found = [p.parent for pattern in ("store.json", "*/store.json", "*/*/store.json") for p in folder.glob(pattern)]
    if not found:
        raise FileNotFoundError(f"{folder}: no descriptor store here (no store.json in it or below it); give the "
                                "folder of `netvlad extract --out`, `evaluate --store` or `index build --out`")
    return sorted(found)


def run_verify(args: argparse.Namespace) -> int:
    """Verify every store in ``args.folder``: 0 when all rows proved themselves, 1 when some became pending."""
    from netvlad.extract.store import DescriptorStore
    from netvlad.extract.store_check import layout_damage
    from netvlad.files import read_json

    status = 0
    for folder in stores_in(args.folder):
        meta = read_json(folder / "store.json", "descriptor store description")
        names = (folder / "names.txt").read_text(encoding="utf-8").splitlines()
        layout = layout_damage(folder, meta, len(names), int(meta.get("version", 1)) >= 2)
        store = DescriptorStore.open(folder, mode="r+")  # repairs the layout: lost rows become pending
        damaged = store.verify()
        pending = len(store.pending())
        if layout or len(damaged):
            status = 1
        logger.info("%s: %d rows, %d done, %d pending%s%s", folder, len(store), store.num_done, pending,
                    f"; repaired {', '.join(d.path.name for d in layout)}" if layout else "",
                    f"; {len(damaged)} row(s) failed their checksum" if len(damaged) else "")
        if store.checksums is None:
            logger.warning("%s: written before row checksums existed; its rows cannot be verified", folder)
    if status:
        logger.warning("damaged rows are pending now: run the command that extracted the store again to extract them")
    return status

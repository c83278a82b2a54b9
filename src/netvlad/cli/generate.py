"""`netvlad generate`: not written yet."""

from __future__ import annotations


def register(subparsers) -> None:
    """Add this module's sub-commands (none yet)."""

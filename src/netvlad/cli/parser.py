"""The ``netvlad`` argument parser: help that shows each option's default, and one-line argument errors."""

from __future__ import annotations

import argparse


class DefaultsFormatter(argparse.HelpFormatter):
    """Help lines end with ``(default: X)`` unless they say their default already, or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings
                or isinstance(default, bool) and action.nargs == 0):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else "%(default)s"
        return f"{text} (default: {shown})" if text else f"default: {shown}"


RENAMED = {"--num-clusters": "--clusters"}  # spellings that are gone, and the flag that took their place


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose sub-commands share its formatter and whose usage errors are one line."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """``netvlad CMD: error: MESSAGE (see `netvlad CMD --help`)`` on stderr, exit status 2."""
        message = " ".join(message.split())
        words = {word.split("=")[0] for word in message.split()}
        gone = [f"{old} is now {new}" for old, new in RENAMED.items() if old in words]
        message += f" ({'; '.join(gone)})" if gone else ""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

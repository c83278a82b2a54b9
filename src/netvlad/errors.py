"""The library's one error type for bad input: a file or value a user handed us that we cannot use.

Library messages name the file and the Python parameter (``skip_bad=True``); a CLI-facing ``hint`` carries the
command-line wording (``--skip-bad``), which only ``netvlad.cli`` adds to what it prints. No caller ever decides
anything by reading a message's text: it reads the type and its attributes.
"""

from __future__ import annotations

from pathlib import Path


class BadInputError(ValueError):
    """Input that cannot be used as given; ``str(error)`` is one line naming the file and the fix.

    ``path`` is the offending file (or ``None``), ``hint`` an optional command-line wording of the fix that only
    the CLI shows, ``skippable`` whether ``skip_bad=True`` would log and skip this entry instead of raising.
    """

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None,
                 skippable: bool = False) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.hint = hint
        self.skippable = skippable

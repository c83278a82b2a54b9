"""One registry mechanism for every named kind (backbones, poolings, readers, converters, index kinds, protocols,
optimizers, schedulers, exporters): each name registered once with a one-line help, listed sorted, looked up with a
one-line error listing the known names. Imports only netvlad.errors, so any layer (and the CLI, without torch) may
use it.

A kind whose implementation can be imported without torch is one decorated definition (``@REGISTRY.register``,
heavy imports inside the function); a kind whose module needs torch at import time is *declared* by its import path
(``declare(name, "package.module:attribute", help)``) and imported on first :meth:`Registry.get`, so the command line
lists its name and help without loading torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from netvlad.errors import BadInputError

T = TypeVar("T")


class _Declared:
    """A registered entry not imported yet: ``module:attribute``."""

    def __init__(self, target: str) -> None:
        if ":" not in target:
            raise ValueError(f"declare a target as 'package.module:attribute', got {target!r}")
        self.target = target

    def resolve(self):
        module, _, attribute = self.target.partition(":")
        value = importlib.import_module(module)
        for part in attribute.split("."):
            value = getattr(value, part)
        return value


class Registry(Generic[T]):
    """Entries of one ``kind`` by name, each with a one-line help.

    Examples:
        >>> pools = Registry("pooling")
        >>> pools.add("gem", "GeM", help="generalised mean")
        >>> @pools.register("max", help="f_max: the largest activation per channel")
        ... def max_pool():
        ...     return "MaxPool"
        >>> pools.get("gem"), pools.names(), pools.get("max")()
        ('GeM', ['gem', 'max'], 'MaxPool')
        >>> pools.describe()
        'gem: generalised mean; max: f_max: the largest activation per channel'
        >>> pools.declare("sqrt", "math:sqrt", help="imported on first use")
        >>> pools.get("sqrt")(16.0)
        4.0
        >>> pools.get("vlad")
        Traceback (most recent call last):
        ...
        netvlad.errors.BadInputError: unknown pooling 'vlad'; registered: gem, max, sqrt
    """

    def __init__(self, kind: str, known: str = "registered") -> None:
        self.kind, self.known = kind, known
        self.entries: dict[str, T] = {}
        self.helps: dict[str, str] = {}

    def add(self, name: str, entry: T, help: str = "") -> None:
        """Register ``entry`` as ``name``; a name already taken is refused."""
        if name in self.entries:
            raise ValueError(f"{self.kind} {name!r} is already registered; choose another name")
        self.entries[name] = entry
        self.helps[name] = help

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator: register the decorated definition as ``name`` and return it unchanged."""

        def decorate(entry: T) -> T:
            self.add(name, entry, help)
            return entry

        return decorate

    def declare(self, name: str, target: str, help: str = "") -> None:
        """Register ``name`` by the import path ``"package.module:attribute"`` of its entry (imported on first get)."""
        self.add(name, _Declared(target), help)  # type: ignore[arg-type]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self.entries)

    def get(self, name: str) -> T:
        """The entry registered as ``name``; a clear error listing the registered ones otherwise."""
        try:
            entry = self.entries[name]
        except KeyError:
            raise BadInputError(f"unknown {self.kind} {name!r}; {self.known}: {', '.join(self.names())}") from None
        if isinstance(entry, _Declared):
            entry = self.entries[name] = entry.resolve()
        return entry

    def help(self, name: str) -> str:
        """The one-line help registered with ``name``."""
        self.get(name) if name not in self.entries else None
        return self.helps[name]

    def describe(self, names: list[str] | None = None) -> str:
        """``name: help; ...`` for ``names`` (default: all, sorted) — for command-line help texts."""
        return "; ".join(f"{n}: {self.helps[n]}" if self.helps.get(n) else n for n in (names or self.names()))

    def values(self) -> list[T]:
        """The entries in name order (declared ones imported)."""
        return [self.get(name) for name in self.names()]

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in name order (declared ones imported)."""
        return [(name, self.get(name)) for name in self.names()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"

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
    """A registered entry not imported yet: ``module:attribute``, or a ``module`` whose import defines it."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.module, _, self.attribute = target.partition(":")

    def resolve(self, registry: Registry, name: str):
        value = importlib.import_module(self.module)
        if not self.attribute:  # importing the module registered the real entry in place of this declaration
            entry = registry.entries[name]
            if isinstance(entry, _Declared):
                raise LookupError(f"{registry.kind} {name!r} is declared in {self.module}, which does not define it")
            return entry
        for part in self.attribute.split("."):
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
        >>> pools.declared(), pools.get("sqrt")(16.0), pools.declared()
        ({'sqrt': 'math:sqrt'}, 4.0, {})
        >>> pools.get("vlad")
        Traceback (most recent call last):
        ...
        netvlad.errors.BadInputError: unknown pooling 'vlad'; registered: gem, max, sqrt
    """

    def __init__(self, kind: str, known: str = "registered", ordered: bool = False) -> None:
        self.kind, self.known, self.ordered = kind, known, ordered  # ordered: list in registration order
        self.entries: dict[str, T] = {}
        self.helps: dict[str, str] = {}

    def add(self, name: str, entry: T, help: str = "") -> None:
        """Register ``entry`` as ``name``; a name already taken is refused (a declared one is defined)."""
        if name in self.entries and not isinstance(self.entries[name], _Declared):
            raise ValueError(f"{self.kind} {name!r} is already registered; choose another name")
        self.entries[name] = entry
        self.helps[name] = help or self.helps.get(name, "")

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator: register the decorated definition as ``name`` and return it unchanged."""

        def decorate(entry: T) -> T:
            self.add(name, entry, help)
            return entry

        return decorate

    def declare(self, name: str, target: str, help: str = "") -> None:
        """Register ``name`` by where its entry lives, imported on first :meth:`get`: ``"package.module:attribute"``,
        or ``"package.module"`` whose import defines it (with :meth:`add` or :meth:`register`)."""
        if name in self.entries:
            raise ValueError(f"{self.kind} {name!r} is already registered; choose another name")
        self.entries[name] = _Declared(target)  # type: ignore[assignment]
        self.helps[name] = help

    def names(self) -> list[str]:
        """The registered names, sorted (in registration order for an ``ordered`` registry)."""
        return list(self.entries) if self.ordered else sorted(self.entries)

    def get(self, name: str) -> T:
        """The entry registered as ``name``; a clear error listing the registered ones otherwise."""
        try:
            entry = self.entries[name]
        except KeyError:
            known = f"{self.known} " if self.known.endswith(" of") else f"{self.known}: "
            raise BadInputError(f"unknown {self.kind} {name!r}; {known}{', '.join(self.names())}") from None
        if isinstance(entry, _Declared):
            entry = self.entries[name] = entry.resolve(self, name)
        return entry

    def declared(self) -> dict[str, str]:
        """``{name: import target}`` of the entries declared and not imported yet."""
        return {name: entry.target for name, entry in self.entries.items() if isinstance(entry, _Declared)}

    def help(self, name: str) -> str:
        """The one-line help registered with ``name``."""
        if name not in self.entries:
            self.get(name)  # the error naming the registered ones
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

"""A named registry (backbones, checkpoint converters): each name registered once, listed sorted, looked up with a
one-line error listing the known names. Imports only netvlad.errors, so any layer may use it."""

from __future__ import annotations

from typing import Generic, TypeVar

from netvlad.errors import BadInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` by name.

    Examples:
        >>> pools = Registry("pooling")
        >>> pools.add("gem", "GeM")
        >>> pools.get("gem"), pools.names()
        ('GeM', ['gem'])
        >>> pools.get("vlad")
        Traceback (most recent call last):
        ...
        netvlad.errors.BadInputError: unknown pooling 'vlad'; registered: gem
    """

    def __init__(self, kind: str, known: str = "registered") -> None:
        self.kind, self.known = kind, known
        self.entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        """Register ``entry`` as ``name``; a name already taken is refused."""
        if name in self.entries:
            raise ValueError(f"{self.kind} {name!r} is already registered; choose another name")
        self.entries[name] = entry

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self.entries)

    def get(self, name: str) -> T:
        """The entry registered as ``name``; a clear error listing the registered ones otherwise."""
        try:
            return self.entries[name]
        except KeyError:
            raise BadInputError(f"unknown {self.kind} {name!r}; {self.known}: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.entries

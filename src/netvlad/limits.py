"""Allowed ranges of numeric options, shared by the config dataclasses and the CLI's argument parsing.

Imports nothing heavy, so the CLI checks arguments where it parses them, before loading torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from netvlad.errors import BadInputError


@dataclass(frozen=True)
class Limit:
    """A closed or half-open numeric range; ``integer`` also requires a whole number."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low < x instead of low ≤ x
    high_open: bool = False  # x < high instead of x ≤ high
    integer: bool = False

    def describe(self) -> str:
        """``"an integer ≥ 1"``, ``"a number > 0"``, ``"a number in [0, 1)"``."""
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            return (f"{kind} in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '≥'} {_num(self.low)}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '≤'} {_num(self.high)}"
        return kind

    def accepts(self, value: float) -> bool:
        """Whether ``value`` lies in the range (and is whole, for ``integer``)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
            return False
        if self.integer and (value in (math.inf, -math.inf) or value != int(value)):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def check(self, name: str, value: float) -> None:
        """Raise :class:`BadInputError` ``"<name> must be <range>, got <value>"`` unless ``accepts(value)``."""
        if not self.accepts(value):
            raise BadInputError(f"{name} must be {self.describe()}, got {value!r}")

    def parse(self, text: str) -> int | float:
        """The number ``text`` spells, in range; ValueError ``"must be <range>, got '<text>'"`` otherwise."""
        try:
            value: int | float = int(text) if self.integer else float(text)
        except ValueError:
            raise ValueError(f"must be {self.describe()}, got {text!r}") from None
        if not self.accepts(value):
            raise ValueError(f"must be {self.describe()}, got {text!r}")
        return value


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


COUNT = Limit(1, integer=True)  # sizes, batch sizes, k, iterations
NON_NEGATIVE_INT = Limit(0, integer=True)  # worker processes, seeds, tolerances (0 = none)
POSITIVE = Limit(0, low_open=True)  # radii, learning rates, margins (metres, ...)
NON_NEGATIVE = Limit(0)
FRACTION = Limit(0, 1, high_open=True)  # momentum, decay factors in [0, 1)
NUM_CLUSTERS = Limit(1, 4096, integer=True)  # NetVLAD K: K × D descriptor dims
NEIGHBOURS = Limit(1, 1 << 20, integer=True)  # k per query: its (Q, k) distances and ids must fit in memory
FRAME_NUMBER = Limit(-10**12, 10**12, integer=True)  # a recorded frame number (milliseconds over 30 years fit)

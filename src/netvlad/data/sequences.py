"""Sequence order of an image list: which sequence (traverse, drive, walk) each image belongs to and its frame
number in it, as the data records it (frame-numbered names, MSLS ``seq_info.csv``, CSV columns, a city's passes)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class SequenceOrder:
    """Per image: ``ids`` (N,) int64 index into ``names`` (the sequence) and ``frames`` (N,) int64 its recorded frame
    number. Frame numbers may have gaps, repeats or come unsorted in list order; users of the order sort each
    sequence by frame number (stable) and count the gaps, never guess another order."""

    ids: np.ndarray
    frames: np.ndarray
    names: tuple[str, ...] = ("0",)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        names = tuple(str(n) for n in self.names)
        if len(ids) != len(frames):
            raise ValueError(f"sequence order: {len(ids)} sequence ids but {len(frames)} frame numbers")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(names)):
            raise ValueError(f"sequence order: ids must lie in 0..{len(names) - 1}, got {ids.min()}..{ids.max()}")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "names", names)

    @classmethod
    def from_keys(cls, keys: Sequence[str], frames: Sequence[int] | np.ndarray) -> SequenceOrder:
        """From one sequence key per image (names kept in order of first appearance) and frame numbers."""
        vocabulary: dict[str, int] = {}
        ids = [vocabulary.setdefault(str(k), len(vocabulary)) for k in keys]
        return cls(np.asarray(ids, np.int64), np.asarray(frames, np.int64), tuple(vocabulary) or ("0",))

    @classmethod
    def single(cls, frames: Sequence[int] | np.ndarray, name: str = "0") -> SequenceOrder:
        """Every image in one sequence ``name`` with the given frame numbers."""
        frames = np.asarray(frames, np.int64).reshape(-1)
        return cls(np.zeros(len(frames), np.int64), frames, (name,))

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: np.ndarray) -> SequenceOrder:
        """The order of the images at ``indices`` (int array), sequence names kept."""
        return SequenceOrder(self.ids[indices], self.frames[indices], self.names)

    def members(self) -> list[np.ndarray]:
        """Per sequence with at least one image: its image indices sorted by frame number (stable)."""
        order = np.lexsort((self.frames, self.ids))
        cuts = np.flatnonzero(np.diff(self.ids[order])) + 1
        return [part for part in np.split(order, cuts) if len(part)] if len(order) else []

    def gaps(self) -> int:
        """Steps between consecutive frames (in frame order) of one sequence that are not +1 (gaps and repeats)."""
        return int(sum(int((np.diff(self.frames[m]) != 1).sum()) for m in self.members()))

    def unsorted(self) -> int:
        """Images listed before an image of the same sequence with a smaller frame number (list order ≠ frames)."""
        count = 0
        for sequence in np.unique(self.ids):
            frames = self.frames[self.ids == sequence]
            count += int((frames < np.maximum.accumulate(frames)).sum())
        return count

    def describe(self) -> str:
        """One line: sequence count, lengths, gaps and unsorted images."""
        lengths = np.array([len(m) for m in self.members()])
        if not len(lengths):
            return "no images"
        return (f"{len(lengths)} sequence{'s' * (len(lengths) > 1)}, {lengths.min()}..{lengths.max()} frames "
                f"(median {int(np.median(lengths))}), {self.gaps()} gaps/repeats, {self.unsorted()} out of order")


def frame_number(name: str) -> int | None:
    """The last digit run of a file name's stem (``Image012.jpg`` -> 12, ``images-00010.png`` -> 10), or None."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    digits = re.findall(r"\d+", stem)
    return int(digits[-1]) if digits else None


def from_names(names: Sequence[str]) -> SequenceOrder | None:
    """Sequence order from frame-numbered file names: the folder is the sequence, the last number the frame; None
    when any name has no number."""
    frames = [frame_number(n) for n in names]
    if not names or any(f is None for f in frames):
        return None
    return SequenceOrder.from_keys([n.rsplit("/", 1)[0] if "/" in n else "" for n in names], frames)


def frame_steps(numbers: Sequence[int] | np.ndarray) -> np.ndarray:
    """Recorded frame numbers in units of their usual step (the gcd of the steps between sorted numbers), from 0:
    Nordland's ``00010, 00020, …`` -> ``0, 1, …``; a missing frame stays a gap."""
    numbers = np.asarray(numbers, np.int64).reshape(-1)
    if not len(numbers):
        return numbers
    steps = np.diff(np.unique(numbers))
    step = int(np.gcd.reduce(steps)) if len(steps) else 1
    return (numbers - numbers.min()) // max(step, 1)

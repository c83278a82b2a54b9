"""Resumable pipeline steps, as hloc's: a step whose outputs exist and were made from the same inputs is skipped.

Each step records its inputs (plain JSON: settings, file digests, dataset digests) in ``<out>/steps/<name>.json``
when it starts, and marks the record complete when its outputs are written. On a rerun a complete record with
equal inputs and every output present means the step is done; an incomplete record with equal inputs means it
died on the way (training then resumes from its state); anything else, or ``force``, redoes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netvlad.data.dataset import GeoDataset
from netvlad.files import atomic_write
from netvlad.hashing import raw_bytes
from netvlad.models import read_checkpoint

logger = logging.getLogger(__name__)


def checkpoint_digest(path: Path) -> str:
    """SHA-256 (16 hex digits) of a checkpoint's config and tensors (not its bytes: safetensors writes the
    metadata in a different order each time, so equal models can differ byte for byte)."""
    config, tensors, _ = read_checkpoint(path)
    digest = hashlib.sha256(config.to_json().encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(array_digest(tensors[name].numpy()).encode())
    return digest.hexdigest()[:16]


def array_digest(*arrays: np.ndarray) -> str:
    """SHA-256 (16 hex digits) of arrays' shapes, dtypes and values."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)  # at least 1-D: the shape the digests were made with
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(raw_bytes(array))
    return digest.hexdigest()[:16]


def dataset_digest(dataset: GeoDataset | None) -> str | None:
    """SHA-256 (16 hex digits) of a dataset's image roots, names, positions, frames and frame tolerance."""
    if dataset is None:
        return None
    digest = hashlib.sha256(str(dataset.frame_tolerance).encode())
    for side in (dataset.database, dataset.queries):
        digest.update(str(side.root).encode())
        digest.update("\n".join(side.names).encode())
        digest.update(np.ascontiguousarray(side.utm, dtype=np.float64).tobytes())
        if side.frames is not None:
            digest.update(np.ascontiguousarray(side.frames, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def _plain(inputs: Mapping[str, Any]) -> dict:
    """The inputs as JSON would read them back (tuples become lists, paths strings), so records compare equal."""
    return json.loads(json.dumps(dict(inputs), sort_keys=True, default=str))


@dataclass(frozen=True)
class Step:
    """One step's record: ``folder/<name>.json`` holding its ``inputs`` and whether it completed."""

    folder: Path
    name: str
    inputs: dict

    @property
    def record(self) -> Path:
        return self.folder / f"{self.name}.json"

    def _read(self) -> dict | None:
        try:
            return json.loads(self.record.read_text())
        except (OSError, ValueError):
            return None

    def state(self, outputs: Sequence[Path], force: bool = False) -> str:
        """``"done"`` (skip), ``"started"`` (same inputs, died on the way) or ``"new"`` (run from scratch)."""
        record = self._read()
        if force or record is None or record.get("inputs") != _plain(self.inputs):
            if record is not None and not force:
                changed = sorted(k for k in {*record.get("inputs", {}), *self.inputs}
                                 if record.get("inputs", {}).get(k) != _plain(self.inputs).get(k))
                logger.info("step %s: inputs changed (%s); redoing it", self.name, ", ".join(changed))
            return "new"
        if record.get("complete") and all(Path(p).exists() for p in outputs):
            return "done"
        return "started"

    def begin(self) -> None:
        """Record the inputs, not yet complete (before any output is written)."""
        self._write(False)

    def end(self) -> None:
        """Mark the step complete (after every output is written)."""
        self._write(True)

    def _write(self, complete: bool) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"inputs": _plain(self.inputs), "complete": complete}, indent=1) + "\n"
        atomic_write(self.record, lambda tmp: Path(tmp).write_text(text))


@dataclass
class Timer:
    """Wall and CPU seconds (this process and its children) of each named step, in ``order``."""

    order: Sequence[str]
    steps: dict[str, dict[str, float]] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        logger.info("step %d/%d: %s", list(self.order).index(name) + 1, len(self.order), name)
        wall, cpu = time.perf_counter(), self._cpu()
        yield
        self.steps[name] = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(self._cpu() - cpu, 1)}
        logger.info("step %s done in %.1f s (%.1f CPU s)", name, self.steps[name]["wall_s"], self.steps[name]["cpu_s"])

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def total(self) -> dict[str, float]:
        return {k: round(sum(s[k] for s in self.steps.values()), 1) for k in ("wall_s", "cpu_s")}

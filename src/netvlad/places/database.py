"""A place database that grows: add, remove and search frames online, exact or IVF-PQ, saved atomically.

Entry ids are the order of addition (0, 1, 2, ...) and are never reused: removed entries stay as tombstones, so a
database built in one call equals one built by adds in any split into batches (same ids, same results). Every
entry has a name, a position ``(2,)`` metres (NaN: unknown) and a time (seconds; without one, its id: a frame
count); a search can leave out entries newer than a time (``exclude_after``) or than the newest entry minus
``exclude_recent`` (the last seconds of a stream, which trivially look alike).

Exact search reads the float32 rows held in memory (appending is free). IVF-PQ (``DatabaseConfig.index.kind ==
"ivfpq"``) searches exactly until ``min_train`` entries exist, then trains an index on them at the next search
and adds later entries to its lists; when the database has grown past ``retrain_factor`` × the size it was
trained on, it is retrained on all entries (logged). Training happens at search (or save) time only, so adding
in batches never changes what gets trained on.

A saved folder holds ``CURRENT`` (the name of the complete state) and that state's folder ``state-N/``
(``database.json``, ``descriptors.npy``, ``alive.npy``, ``times.npy``, ``positions.npy``, ``names.txt`` and
``index.faiss`` when trained). A save writes a new state folder in full, syncs it, then replaces ``CURRENT``
atomically: a crash at any point leaves the previous state loadable.

Saving and loading: a save writes ``state-N/`` in full (each file synced, the folder too), then replaces ``CURRENT``
(the name of the state to load) atomically, then deletes older states. A crash before the swap leaves ``CURRENT``
naming the previous complete state (the half-written folder is ignored and cleaned up by the next save); after it,
the new one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from netvlad.errors import BadInputError
from netvlad.files import atomic_write, load_array, read_json
from netvlad.search.exact import rerank
from netvlad.search.index import INDEX_KINDS, IndexConfig, read_index, train_index, training_sample, write_index

logger = logging.getLogger(__name__)

FORMAT, VERSION = "netvlad-place-database", 1
KINDS = ("flat", "ivfpq")


@dataclass(frozen=True)
class DatabaseConfig:
    """``index``: flat (exact) or ivfpq settings; IVF-PQ trains once ``min_train`` entries exist and retrains past
    ``retrain_factor`` × its training size; ``max_distance`` (L2) drops farther matches from searches."""

    index: IndexConfig = field(default_factory=IndexConfig)
    min_train: int = 1000
    retrain_factor: float = 4.0
    max_distance: float | None = None

    def __post_init__(self) -> None:
        if self.index.kind not in KINDS:
            raise BadInputError(f"a place database searches with {' or '.join(KINDS)}, not {self.index.kind!r}")
        if self.retrain_factor <= 1:
            raise BadInputError(f"retrain_factor must be > 1, got {self.retrain_factor}")
        if self.min_train < 2**self.index.nbits:
            raise BadInputError(f"min_train must be at least {2**self.index.nbits} for {self.index.nbits}-bit codes")


class PlaceDatabase:
    """Descriptors ``(N, dim)`` of named, timed, positioned frames; see the module docstring."""

    def __init__(self, dim: int, config: DatabaseConfig | None = None, fingerprint: str | None = None) -> None:
        self.dim, self.config, self.fingerprint = int(dim), config or DatabaseConfig(), fingerprint
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)
        self._alive, self._times = np.zeros(0, dtype=bool), np.zeros(0, dtype=np.float64)
        self._positions = np.zeros((0, 2), dtype=np.float64)
        self._count = 0
        self.names: list[str] = []
        self.index: faiss.Index | None = None
        self.trained_on = 0
        self._monotonic = True  # times never decrease with id: a time cut-off is an id range
        self._removed = 0  # entries removed (so that len and a search's eligible count cost O(1), not O(N))

    # ---- state -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count - self._removed

    @property
    def count(self) -> int:
        """Entries ever added (the next id), removed ones included."""
        return self._count

    @property
    def descriptors(self) -> np.ndarray:
        """All rows ``(count, dim)`` float32 (removed ones included, zero)."""
        return self._vectors[:self._count]

    @property
    def alive(self) -> np.ndarray:
        """Mask ``(count,)`` of entries not removed."""
        return self._alive[:self._count]

    @property
    def times(self) -> np.ndarray:
        """Entry times ``(count,)`` seconds (or frame counts)."""
        return self._times[:self._count]

    @property
    def positions(self) -> np.ndarray:
        """Entry positions ``(count, 2)`` metres (NaN: unknown)."""
        return self._positions[:self._count]

    def __repr__(self) -> str:
        return (f"PlaceDatabase({len(self)} entries, {self.dim}-D, {self.config.index.kind}"
                + (f", trained on {self.trained_on}" if self.index is not None else "") + ")")

    # ---- changing ----------------------------------------------------------------------------------------
    def add(self, descriptors: np.ndarray, names: Sequence[str], positions: np.ndarray | None = None,
            times: Sequence[float] | None = None) -> np.ndarray:
        """Append ``descriptors`` ``(B, dim)`` named ``names``, at ``positions`` ``(B, 2)`` metres and ``times``
        ``(B,)`` seconds (default: unknown, and their ids); -> their ids ``(B,)``."""
        x = np.asarray(descriptors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise BadInputError(f"the database holds {self.dim}-D descriptors, got shape {x.shape}")
        x = np.ascontiguousarray(x)
        b = len(x)
        if len(names) != b or any("\n" in str(n) for n in names):
            raise BadInputError(f"{b} descriptors need {b} names without line breaks, got {len(names)}")
        ids = np.arange(self._count, self._count + b, dtype=np.int64)
        pos = np.full((b, 2), np.nan) if positions is None else np.asarray(positions, dtype=np.float64)
        when = ids.astype(np.float64) if times is None else np.asarray(times, dtype=np.float64)
        if pos.shape != (b, 2) or when.shape != (b,):
            raise BadInputError(f"positions {pos.shape} and times {when.shape} must be ({b}, 2) and ({b},)")
        last = self._times[self._count - 1] if self._count else -np.inf
        self._monotonic &= bool(np.all(np.diff(when, prepend=last) >= 0))
        self._grow(self._count + b)
        rows = slice(self._count, self._count + b)
        self._vectors[rows], self._alive[rows], self._times[rows], self._positions[rows] = x, True, when, pos
        self.names += [str(n) for n in names]
        self._count += b
        if self.index is not None and b:
            self.index.add_with_ids(x, ids)  # into the trained lists: no rebuild
        return ids

    def reserve(self, capacity: int) -> None:
        """Room for ``capacity`` entries now: appends up to it copy nothing (a doubling at 10⁶ 1280-D holds 15 GB)."""
        self._grow(int(capacity))

    def _grow(self, needed: int) -> None:
        if needed <= len(self._vectors):
            return
        capacity = max(needed, 2 * len(self._vectors), 64)  # doubling: appending costs O(1) per row on average

        def bigger(old: np.ndarray) -> np.ndarray:
            new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[:self._count] = old[:self._count]
            return new

        self._vectors, self._alive = bigger(self._vectors), bigger(self._alive)
        self._times, self._positions = bigger(self._times), bigger(self._positions)

    def remove(self, ids: Sequence[int]) -> int:
        """Remove entries by id (unknown or already removed ids are ignored); -> how many were removed."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        ids = np.unique(ids[(ids >= 0) & (ids < self._count)])
        ids = ids[self._alive[ids]]
        self._alive[ids] = False
        self._removed += len(ids)
        self._vectors[ids] = 0
        if self.index is not None and len(ids):
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
        return len(ids)

    # ---- searching ---------------------------------------------------------------------------------------
    def eligible(self, exclude_after: float | None = None, exclude_recent: float | None = None) -> np.ndarray:
        """Mask ``(count,)`` of entries a search may return: alive, not newer than ``exclude_after``, nor than
        the newest entry's time minus ``exclude_recent``."""
        return self.alive & (self.times <= self._cutoff(exclude_after, exclude_recent))

    def prefix_until(self, time: float) -> int:
        """How many leading entries (ids 0 … m−1) are no newer than ``time`` seconds (the rest start with a newer
        one): what a trajectory over the stream's own entries may visit."""
        if self._monotonic:
            return int(np.searchsorted(self.times, time, side="right"))
        newer = np.flatnonzero(self.times > time)
        return int(newer[0]) if len(newer) else self._count

    def _cutoff(self, exclude_after: float | None, exclude_recent: float | None) -> float:
        """The newest time a search may return (inf: any)."""
        if exclude_recent is not None and not exclude_recent >= 0:
            raise BadInputError(f"exclude_recent must be ≥ 0, got {exclude_recent}")
        cutoff = np.inf if exclude_after is None else float(exclude_after)
        if exclude_recent is not None and self._count:
            newest = float(self.times[-1]) if self._monotonic else float(self.times.max())
            cutoff = min(cutoff, newest - exclude_recent)
        return cutoff

    def search(self, descriptors: np.ndarray, k: int = 1, *, exclude_after: float | None = None,
               exclude_recent: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` eligible entries (see :meth:`eligible`) -> (L2 distances ``(Q, k)`` ascending, ids ``(Q, k)``;
        −1 and inf where fewer qualify, or beyond ``config.max_distance``)."""
        q = np.ascontiguousarray(np.asarray(descriptors, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise BadInputError(f"the database holds {self.dim}-D descriptors, got queries of shape {q.shape}")
        k = int(k)
        if k < 1:
            raise BadInputError(f"k must be ≥ 1, got {k}")
        cutoff = self._cutoff(exclude_after, exclude_recent)
        prefix = self._eligible_prefix(cutoff)
        mask = None if prefix is not None else self.alive & (self.times <= cutoff)
        eligible = prefix if prefix is not None else int(mask.sum())
        out_d, out_i = np.full((len(q), k), np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if not eligible or not len(q):
            return out_d, out_i
        self._ensure_index()
        if self.index is not None:
            dist, ids = self._search_index(q, k, mask, cutoff, prefix, eligible)
        else:
            dist, ids = self._search_exact(q, k, mask, prefix)
        out_d[:, :dist.shape[1]], out_i[:, :ids.shape[1]] = dist, ids
        if self.config.max_distance is not None:
            far = out_d > self.config.max_distance
            out_d[far], out_i[far] = np.inf, -1
        return out_d, out_i

    def _eligible_prefix(self, cutoff: float) -> int | None:
        """m by bisection when the entries a search may return are the first m (times in order, none removed)."""
        return None if not self._monotonic or self._removed else self.prefix_until(cutoff)

    def _search_exact(self, q: np.ndarray, k: int, mask: np.ndarray | None, prefix: int | None
                      ) -> tuple[np.ndarray, np.ndarray]:
        m = prefix if prefix is not None else int(mask.sum())
        m = m if prefix is not None or mask[:m].all() else None  # None: the eligible entries are not a prefix
        rows = np.arange(m) if m is not None else np.flatnonzero(mask)
        vectors = self._vectors[:m] if m is not None else self._vectors[rows]
        squared, found = faiss.knn(q, vectors, min(k, len(rows)))
        found = np.where(found >= 0, rows[np.maximum(found, 0)], -1)
        return np.sqrt(np.maximum(squared, 0)).astype(np.float32), found

    def _search_index(self, q: np.ndarray, k: int, mask: np.ndarray | None, cutoff: float, prefix: int | None,
                      eligible: int) -> tuple[np.ndarray, np.ndarray]:
        ivf = faiss.extract_index_ivf(self.index)  # removed entries are out of its lists already
        m = prefix if prefix is not None else (  # times in order: the cut-off is an id range, removals or not
            self.prefix_until(cutoff) if self._monotonic else None)
        if m == self._count:
            selector = None
        elif m is not None:
            selector = faiss.IDSelectorRange(0, m)
        else:
            selector = faiss.IDSelectorBatch(np.flatnonzero(mask).astype(np.int64))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=self.config.index.probes(ivf.nlist, len(self)))
        wide = min(max(k, self.config.index.rerank), eligible)
        squared, found = self.index.search(q, max(wide, k), params=params)
        if self.config.index.rerank:
            return rerank(self._vectors[:self._count], q, found, min(k, wide))
        return np.sqrt(np.maximum(squared[:, :k], 0)).astype(np.float32), found[:, :k]

    def _ensure_index(self) -> None:
        """IVF-PQ: train once ``min_train`` entries exist, retrain past ``retrain_factor`` × the training size."""
        if self.config.index.kind == "flat" or len(self) < self.config.min_train:
            return
        if self.index is not None and len(self) <= self.config.retrain_factor * self.trained_on:
            return
        if self.index is not None:
            logger.info("place database grew from %d to %d entries (> %g×): retraining IVF-PQ", self.trained_on,
                        len(self), self.config.retrain_factor)
        self._train()

    def _train(self) -> None:
        rows = np.flatnonzero(self.alive)
        config = self.config.index
        index = INDEX_KINDS["ivfpq"].build(self.dim, len(rows), config)
        sample = training_sample(self._vectors[:self._count], rows, config.samples(len(rows)), config.seed)
        logger.info("training IVF-PQ on %d of %d entries (%d-D)", len(sample), len(rows), self.dim)
        train_index(index, sample, config)
        index.add_with_ids(np.ascontiguousarray(self._vectors[rows]), rows.astype(np.int64))
        self.index, self.trained_on = index, len(rows)

    # ---- saving ------------------------------------------------------------------------------------------
    def save(self, folder: Path | str) -> Path:
        """Write the database to ``folder`` atomically (see the module docstring); -> the folder."""
        self._ensure_index()
        return save_database(self, Path(folder))

    @classmethod
    def load(cls, folder: Path | str) -> PlaceDatabase:
        """Open a folder written by :meth:`save` (its last complete state); other versions are refused."""
        return load_database(cls, Path(folder))

    def meta(self) -> dict:
        """What ``database.json`` records."""
        return {"format": FORMAT, "version": VERSION, "dim": self.dim, "count": self._count,
                "fingerprint": self.fingerprint, "trained_on": self.trained_on, "monotonic": self._monotonic,
                "config": dataclasses.asdict(self.config)}

    def _restore(self, vectors, alive, times, positions, names, index, meta) -> None:
        self._vectors, self._count = np.ascontiguousarray(vectors, dtype=np.float32), len(vectors)
        self._alive, self._times = np.array(alive, dtype=bool), np.array(times, dtype=np.float64)
        self._positions, self.names = np.array(positions, dtype=np.float64), list(names)
        self.index, self.trained_on, self._monotonic = index, int(meta["trained_on"]), bool(meta["monotonic"])
        self._removed = int(self._count - self._alive[:self._count].sum())


POINTER = "CURRENT"


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the files it names) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, write) -> None:
    """``write(path)``, then sync the file's bytes to disk."""
    write(path)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_state(db, state: Path) -> None:
    """Every file of ``db`` into the new folder ``state`` (synced)."""
    import json

    state.mkdir(parents=True)
    arrays = {"descriptors.npy": db.descriptors, "alive.npy": db.alive, "times.npy": db.times,
              "positions.npy": db.positions}
    for name, array in arrays.items():
        _write_file(state / name, lambda p, a=array: np.save(p, a))
    _write_file(state / "names.txt",
                lambda p: p.write_text("".join(n + "\n" for n in db.names), encoding="utf-8"))
    if db.index is not None:
        _write_file(state / "index.faiss", lambda p: write_index(db.index, p))
    _write_file(state / "database.json", lambda p: p.write_text(json.dumps(db.meta(), indent=1), encoding="utf-8"))
    _sync_folder(state)


def save_database(db, folder: Path) -> Path:
    """Write ``db`` as a new state of ``folder`` and switch ``CURRENT`` to it atomically; -> ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()) and not (folder / POINTER).is_file():
        raise BadInputError(f"{folder}: exists and is not a place database; choose an empty or new folder",
                            path=folder)
    previous = _current_name(folder)
    state = f"state-{uuid.uuid4().hex[:12]}"
    write_state(db, folder / state)
    _sync_folder(folder)
    atomic_write(folder / POINTER, lambda tmp: tmp.write_text(state + "\n", encoding="ascii"))  # the commit
    _sync_folder(folder)
    for old in folder.glob("state-*"):  # the previous state and any half-written ones from crashed saves
        if old.name != state:
            shutil.rmtree(old, ignore_errors=True)
    logger.info("place database (%d entries) saved to %s%s", len(db), folder,
                f" (replacing {previous})" if previous else "")
    return folder


def _current_name(folder: Path) -> str | None:
    pointer = folder / POINTER
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="ascii", errors="replace").strip()
    if not name.startswith("state-") or "/" in name:
        raise BadInputError(f"{pointer}: does not name a saved state; the folder is damaged", path=pointer)
    return name


def load_database(cls, folder: Path):
    """The database in the state ``folder/CURRENT`` names; other formats, versions or damage are refused."""
    from netvlad.search.index import IndexConfig

    name = _current_name(folder)
    if name is None:
        raise FileNotFoundError(f"{folder}: not a place database (no {POINTER}); save one first")
    state = folder / name
    meta = read_json(state / "database.json", "place database description")
    if meta.get("format") != FORMAT:
        raise BadInputError(f"{state}: not a netvlad place database", path=state)
    if meta.get("version") != VERSION:
        raise BadInputError(f"{state}: place database version {meta.get('version')}, this netvlad reads version "
                            f"{VERSION}; rebuild it", path=state)
    config = dict(meta["config"])
    config["index"] = IndexConfig(**config["index"])
    db = cls(meta["dim"], DatabaseConfig(**config), meta.get("fingerprint"))
    vectors = load_array(state / "descriptors.npy", "place database descriptors")
    alive = load_array(state / "alive.npy", "place database mask")
    times = load_array(state / "times.npy", "place database times")
    positions = load_array(state / "positions.npy", "place database positions")
    names = (state / "names.txt").read_text(encoding="utf-8").splitlines()
    count = int(meta["count"])
    if (vectors.shape != (count, db.dim) or alive.shape != (count,) or times.shape != (count,)
            or positions.shape != (count, 2) or len(names) != count):
        raise BadInputError(f"{state}: files disagree on the number of entries ({count} expected); the save is "
                            "damaged", path=state)
    index = read_index(state / "index.faiss") if (state / "index.faiss").is_file() else None
    if index is None and meta["trained_on"]:
        raise BadInputError(f"{state}: index.faiss is missing; the save is damaged", path=state)
    if index is not None and index.ntotal != int(alive.sum()):
        raise BadInputError(f"{state}: index.faiss holds {index.ntotal} entries, not {int(alive.sum())}",
                            path=state)
    db._restore(vectors, alive, times, positions, names, index, meta)
    return db

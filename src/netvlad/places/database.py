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

An entry may carry the frame's local features (:class:`netvlad.extract.local_features.LocalFeatures`, what a
loop-closure check verifies geometry with), so that a stream resumed from a saved database can verify closures to
the frames saved before: they are saved as int8 unit-vector codes and uint8 cell positions, padded to the most
cells any entry has (``local_descriptors.npy`` ``(count, cells, C)``, ``local_xy.npy`` ``(count, cells, 2)``,
``local_cells.npy`` ``(count,)`` cells per entry, −1 without features, ``local_grid.npy`` ``(count, 2)``).

A saved folder holds ``CURRENT`` (the name of the complete state and its ``database.json``'s checksum), ``LOCK``
and that state's folder ``state-N/`` (``database.json`` with every other file's CRC32, ``descriptors.npy``,
``alive.npy``, ``times.npy``, ``positions.npy``, ``names.txt``, ``index.faiss`` when trained and the local
features' four files when any entry has them). One process saves
at a time (an OS lock on ``LOCK``; another waits up to ``timeout`` seconds, then is refused); a save writes a new
state folder in full, syncs it, then replaces ``CURRENT`` atomically: a crash at any point, first save included,
leaves the previous state (or none) loadable. A copy loaded from (or saved to) a folder refuses to save over a
state another writer saved there since. A load checks every file's checksum, dtype and shape.

Everything added is checked first: descriptors and times finite, positions finite or NaN, names one line of
UTF-8 each (no line or paragraph separators), so one bad frame never makes later searches or saves fail.

Saving: a save takes the folder's ``LOCK`` (an OS file lock: a second writer waits, then is refused; readers need none),
writes ``state-N/`` in full (each file synced, the folder too) with ``database.json`` recording every other file's
CRC32 and size, then replaces ``CURRENT`` (the state's name and the CRC32 of its ``database.json``) atomically,
then deletes every other state. A crash before the swap leaves ``CURRENT`` naming the previous complete state (or,
on a first save, no ``CURRENT``: the folder is still empty as far as a load is concerned); after it, the new one.
A load checks every file against its checksum and every array's dtype and shape, so a damaged or swapped file is
refused in one line naming it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from netvlad.errors import BadInputError
from netvlad.extract.local_features import LocalFeatures
from netvlad.files import LockTimeout, atomic_write, file_checksum, file_lock, load_array, read_json
from netvlad.limits import NEIGHBOURS
from netvlad.places.database_config import DatabaseConfig
from netvlad.search.exact import rerank
from netvlad.search.index import INDEX_KINDS, IndexConfig, read_index, train_index, training_sample, write_index

logger = logging.getLogger(__name__)

FORMAT, VERSION = "netvlad-place-database", 3
ADD_BLOCK = 65_536  # rows copied at a time into a freshly trained index (10⁶ 1280-D rows copied at once: 5 GB more)
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits on


class PlaceDatabase:
    """Descriptors ``(N, dim)`` of named, timed, positioned frames; see the module docstring.

    Examples:
        >>> import tempfile
        >>> places = PlaceDatabase(dim=4)
        >>> places.add(np.eye(4, dtype=np.float32), ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
        ...            positions=[[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]], times=[0.0, 1.0, 2.0, 3.0])
        array([0, 1, 2, 3])
        >>> query = np.array([[0.0, 0.1, 0.9, 0.0]], dtype=np.float32)
        >>> distances, ids = places.search(query, k=2)
        >>> ids, distances.round(4)
        (array([[2, 1]]), array([[0.1414, 1.2728]], dtype=float32))
        >>> places.search(query, k=1, exclude_recent=1.5)[1]  # leave out the last 1.5 s of the stream
        array([[1]])
        >>> places.remove([2])
        1
        >>> folder = tempfile.TemporaryDirectory()
        >>> saved = places.save(f"{folder.name}/places")  # atomic and checksummed
        >>> loaded = PlaceDatabase.load(saved)
        >>> len(loaded), loaded.count, loaded.search(query, k=1)[1]  # ids are never reused
        (3, 4, array([[1]]))
        >>> folder.cleanup()
    """

    def __init__(self, dim: int, config: DatabaseConfig | None = None, fingerprint: str | None = None) -> None:
        self.dim, self.config, self.fingerprint = int(dim), config or DatabaseConfig(), fingerprint
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)
        self._alive, self._times = np.zeros(0, dtype=bool), np.zeros(0, dtype=np.float64)
        self._positions = np.zeros((0, 2), dtype=np.float64)
        self._count = 0
        self.names: list[str] = []
        self.local: list[LocalFeatures | None] = []  # per entry (None: not described with local features)
        self.index: faiss.Index | None = None
        self.trained_on = 0
        self._monotonic = True  # times never decrease with id: a time cut-off is an id range
        self._removed = 0  # entries removed (so that len and a search's eligible count cost O(1), not O(N))
        self._saved_as: dict[Path, str] = {}  # folder -> the state this copy was loaded from or saved as

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
            times: Sequence[float] | None = None, local: Sequence[LocalFeatures | None] | None = None) -> np.ndarray:
        """Append ``descriptors`` ``(B, dim)`` named ``names``, at ``positions`` ``(B, 2)`` metres and ``times``
        ``(B,)`` seconds (default: unknown, and their ids), with ``local`` features (default: none); -> their ids
        ``(B,)``."""
        x = np.asarray(descriptors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise BadInputError(f"the database holds {self.dim}-D descriptors, got shape {x.shape}")
        x = np.ascontiguousarray(x)
        b = len(x)
        names = [str(n) for n in names]
        if len(names) != b:
            raise BadInputError(f"{b} descriptors need {b} names, got {len(names)}")
        ids = np.arange(self._count, self._count + b, dtype=np.int64)
        pos = np.full((b, 2), np.nan) if positions is None else np.asarray(positions, dtype=np.float64)
        when = ids.astype(np.float64) if times is None else np.asarray(times, dtype=np.float64)
        if pos.shape != (b, 2) or when.shape != (b,):
            raise BadInputError(f"positions {pos.shape} and times {when.shape} must be ({b}, 2) and ({b},)")
        local = [None] * b if local is None else list(local)
        if len(local) != b:
            raise BadInputError(f"{b} descriptors need {b} local features (or None each), got {len(local)}")
        _check_entries(x, names, pos, when)
        last = self._times[self._count - 1] if self._count else -np.inf
        self._monotonic &= bool(np.all(np.diff(when, prepend=last) >= 0))
        self._grow(self._count + b)
        rows = slice(self._count, self._count + b)
        self._vectors[rows], self._alive[rows], self._times[rows], self._positions[rows] = x, True, when, pos
        self.names += names
        self.local += local
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
        """Remove entries by integer id (unknown or already removed ids are ignored); -> how many were removed."""
        given = np.asarray(ids).ravel()
        if given.size and given.dtype.kind not in "iu":
            raise BadInputError(f"entry ids must be integers (as add returned them), got {given.dtype} values "
                                f"such as {given[0]!r}")
        ids = given.astype(np.int64)
        ids = np.unique(ids[(ids >= 0) & (ids < self._count)])
        ids = ids[self._alive[ids]]
        self._alive[ids] = False
        self._removed += len(ids)
        self._vectors[ids] = 0
        for i in ids:
            self.local[i] = None
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
        if exclude_recent is not None:
            exclude_recent = _seconds("exclude_recent", exclude_recent, 0.0)
        cutoff = np.inf if exclude_after is None else _seconds("exclude_after", exclude_after)
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
        if not np.isfinite(q).all():
            raise BadInputError("query descriptors must be finite (one holds NaN or inf)")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
            raise BadInputError(f"k must be an integer in [1, {MAX_K}], got {k!r}")
        k = int(k)
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
        for start in range(0, len(rows), ADD_BLOCK):  # in blocks, as faiss adds them: the same lists, one block held
            part = rows[start:start + ADD_BLOCK]
            index.add_with_ids(np.ascontiguousarray(self._vectors[part]), part.astype(np.int64))
        self.index, self.trained_on = index, len(rows)

    # ---- saving ------------------------------------------------------------------------------------------
    def save(self, folder: Path | str, timeout: float = 60.0) -> Path:
        """Write the database to ``folder`` atomically, waiting up to ``timeout`` seconds for another process
        saving there (see the module docstring); -> the folder."""
        self._ensure_index()
        return save_database(self, Path(folder), _seconds("timeout", timeout, 0.0))

    @classmethod
    def load(cls, folder: Path | str) -> PlaceDatabase:
        """Open a folder written by :meth:`save` (its last complete state, every file checked against its
        checksum; a save in progress does not block it); other versions are refused."""
        return load_database(cls, Path(folder))

    def meta(self) -> dict:
        """What ``database.json`` records."""
        return {"format": FORMAT, "version": VERSION, "dim": self.dim, "count": self._count,
                "fingerprint": self.fingerprint, "trained_on": self.trained_on, "monotonic": self._monotonic,
                "config": dataclasses.asdict(self.config), "local": local_shape(self.local)}

    def _restore(self, vectors, alive, times, positions, names, index, meta, local) -> None:
        self._vectors, self._count = np.ascontiguousarray(vectors, dtype=np.float32), len(vectors)
        self._alive, self._times = np.array(alive, dtype=bool), np.array(times, dtype=np.float64)
        self._positions, self.names, self.local = np.array(positions, dtype=np.float64), list(names), list(local)
        self.index, self.trained_on, self._monotonic = index, int(meta["trained_on"]), bool(meta["monotonic"])
        self._removed = int(self._count - self._alive[:self._count].sum())



MAX_K = int(NEIGHBOURS.high)  # neighbours per query: the answer is (Q, k) distances and ids, 12 bytes each


def _check_entries(x: np.ndarray, names: list[str], positions: np.ndarray, times: np.ndarray) -> None:
    """Refuse entries a saved database could not hold or that would make later searches fail."""
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise BadInputError(f"descriptor {int(bad[0])} of the batch ({names[bad[0]]!r}) is not finite (NaN or inf); "
                            "a place database holds finite descriptors only")
    bad = np.flatnonzero(~np.isfinite(times) | np.isinf(positions).any(axis=1))
    if len(bad):
        raise BadInputError(f"entry {int(bad[0])} of the batch ({names[bad[0]]!r}) has time {times[bad[0]]} and "
                            f"position {tuple(positions[bad[0]])}: times must be finite seconds, positions finite "
                            "metres (NaN: unknown)")
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInputError(f"entry name {name!r} is not valid Unicode text; a saved database cannot hold it"
                                ) from None
        if any(c in name for c in LINE_BREAKS):
            raise BadInputError(f"entry name {name!r} holds a line break; a saved database keeps one name a line: "
                                "rename the frame")


def _seconds(name: str, value, low: float = -math.inf) -> float:
    """``value`` as a float when it is a number ≥ ``low`` (not NaN); BadInputError naming ``name`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not number >= low:
        bound = "a number" if low == -math.inf else f"a number ≥ {low:g}"
        raise BadInputError(f"{name} must be {bound} of seconds, got {value!r}")
    return number

POINTER, LOCK, META = "CURRENT", "LOCK", "database.json"
STATE = re.compile(r"state-[0-9a-f]{12}")
NAMES = "names.txt"
META_KEYS = {"format", "version", "dim", "count", "fingerprint", "trained_on", "monotonic", "config", "files",
             "local"}
LOCAL_FILES = ("local_descriptors.npy", "local_xy.npy", "local_cells.npy", "local_grid.npy")


def expected_arrays(dim: int, count: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """File name -> (shape, dtype) of each array a state of a ``dim``-D database of ``count`` entries holds."""
    return {"descriptors.npy": ((count, dim), np.dtype(np.float32)), "alive.npy": ((count,), np.dtype(bool)),
            "times.npy": ((count,), np.dtype(np.float64)), "positions.npy": ((count, 2), np.dtype(np.float64))}


def local_shape(local: Sequence[LocalFeatures | None]) -> dict | None:
    """``{"cells", "channels"}`` of the padded local-feature arrays of ``local`` (None: no entry has any)."""
    present = [f for f in local if f is not None]
    if not present:
        return None
    return {"cells": max(len(f) for f in present), "channels": int(present[0].descriptors.shape[1])}


def expected_local(count: int, shape: dict) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """File name -> (shape, dtype) of the local-feature arrays of ``count`` entries padded to ``shape``."""
    cells, channels = shape["cells"], shape["channels"]
    return {"local_descriptors.npy": ((count, cells, channels), np.dtype(np.int8)),
            "local_xy.npy": ((count, cells, 2), np.dtype(np.uint8)), "local_cells.npy": ((count,), np.dtype(np.int16)),
            "local_grid.npy": ((count, 2), np.dtype(np.uint16))}


def local_arrays(local: Sequence[LocalFeatures | None], shape: dict) -> dict[str, np.ndarray]:
    """The padded arrays (:func:`expected_local`) holding every entry's local features."""
    arrays = {name: np.zeros(s, dtype) for name, (s, dtype) in expected_local(len(local), shape).items()}
    arrays["local_cells.npy"][:] = -1
    for i, features in enumerate(local):
        if features is None:
            continue
        if features.descriptors.shape[1] != shape["channels"]:
            raise BadInputError(f"entry {i}'s local features have {features.descriptors.shape[1]} channels, the "
                                f"others {shape['channels']}: one database holds one model's features")
        n = len(features)
        arrays["local_descriptors.npy"][i, :n], arrays["local_xy.npy"][i, :n] = features.descriptors, features.xy
        arrays["local_cells.npy"][i], arrays["local_grid.npy"][i] = n, features.grid
    return arrays


def local_features(arrays: dict[str, np.ndarray], path: Path) -> list[LocalFeatures | None]:
    """The entries' local features from :func:`local_arrays`'s arrays (checked: cell counts and positions within
    the padding and the grid)."""
    cells, grid = arrays["local_cells.npy"], arrays["local_grid.npy"]
    width = arrays["local_descriptors.npy"].shape[1]
    xy = arrays["local_xy.npy"]
    out: list[LocalFeatures | None] = []
    for i, n in enumerate(cells.tolist()):
        if n < 0:
            out.append(None)
            continue
        rows, cols = int(grid[i, 0]), int(grid[i, 1])
        if n > width or (n and (xy[i, :n, 0].max() >= cols or xy[i, :n, 1].max() >= rows)):
            raise _damaged(path, f"entry {i}'s local features do not fit their {rows} × {cols} grid")
        out.append(LocalFeatures(arrays["local_descriptors.npy"][i, :n].copy(), xy[i, :n].copy(), (rows, cols)))
    return out


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


def _write_file(path: Path, write) -> dict:
    """``write(path)``, sync the file's bytes to disk -> its ``{"crc32", "bytes"}`` as read back from disk."""
    write(path)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    crc, size = file_checksum(path)
    return {"crc32": crc, "bytes": size}


def write_state(db, state: Path) -> int:
    """Every file of ``db`` into the new folder ``state`` (synced) -> the CRC32 of its ``database.json``."""
    state.mkdir(parents=True)
    arrays = {"descriptors.npy": db.descriptors, "alive.npy": db.alive, "times.npy": db.times,
              "positions.npy": db.positions}
    shape = local_shape(db.local)
    if shape is not None:
        arrays |= local_arrays(db.local, shape)
    files = {name: _write_file(state / name, lambda p, a=array: np.save(p, a)) for name, array in arrays.items()}
    files[NAMES] = _write_file(state / NAMES,
                               lambda p: p.write_text("".join(n + "\n" for n in db.names), encoding="utf-8"))
    if db.index is not None:
        files["index.faiss"] = _write_file(state / "index.faiss", lambda p: write_index(db.index, p))
    meta = db.meta() | {"files": files}
    crc = _write_file(state / META, lambda p: p.write_text(json.dumps(meta, indent=1), encoding="utf-8"))["crc32"]
    _sync_folder(state)
    return crc


def _busy(folder: Path, timeout: float) -> BadInputError:
    return BadInputError(f"{folder}: another process has been saving this place database for over {timeout:g} s; "
                         "wait for it to finish, or save to another folder", path=folder)


def _refuse_foreign(folder: Path) -> None:
    """Refuse a folder holding anything a place database does not write (its files, states and temporaries)."""
    for entry in folder.iterdir():
        name = entry.name
        if name in (POINTER, LOCK) or name.startswith("state-") or name.startswith(f".{POINTER}."):
            continue
        raise BadInputError(f"{folder}: exists and is not a place database (it holds {name!r}); choose an empty or "
                            "new folder", path=folder)


def save_database(db, folder: Path, timeout: float = 60.0) -> Path:
    """Write ``db`` as a new state of ``folder`` and switch ``CURRENT`` to it atomically, holding the folder's
    lock throughout (waiting up to ``timeout`` seconds for another writer); -> ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BadInputError(f"{folder}: exists and is not a folder; choose a new folder", path=folder) from None
    try:
        with file_lock(folder / LOCK, timeout=timeout):
            previous = _commit(db, folder)
    except LockTimeout:
        raise _busy(folder, timeout) from None
    logger.info("place database (%d entries) saved to %s%s", len(db), folder,
                f" (replacing {previous})" if previous else "")
    return folder


def _commit(db, folder: Path) -> str | None:
    """Under the folder's lock: write ``db``'s new state, switch ``CURRENT`` to it, delete the others -> the
    previous state's name."""
    _refuse_foreign(folder)
    previous = _pointer(folder)
    previous = previous[0] if previous else None
    base = db._saved_as.get(folder.resolve())
    if base is not None and previous is not None and previous != base:
        raise BadInputError(f"{folder}: another writer saved this place database after this copy was loaded or "
                            "saved; load it again (PlaceDatabase.load) and redo the changes", path=folder)
    state = f"state-{uuid.uuid4().hex[:12]}"
    crc = write_state(db, folder / state)
    _sync_folder(folder)
    atomic_write(folder / POINTER, lambda tmp: tmp.write_text(f"{state} {crc:08x}\n", encoding="ascii"))
    _sync_folder(folder)  # the commit is on disk
    for old in folder.glob("state-*"):  # the previous state and any half-written ones from crashed saves
        if old.name != state:
            shutil.rmtree(old, ignore_errors=True)
    db._saved_as[folder.resolve()] = state
    return previous


def _pointer(folder: Path) -> tuple[str, int | None] | None:
    """(state name, CRC32 of its database.json or None for a version-1 save) from ``CURRENT``; None without one."""
    pointer = folder / POINTER
    if not pointer.is_file():
        return None
    words = pointer.read_text(encoding="ascii", errors="replace").split()
    if not 1 <= len(words) <= 2 or not STATE.fullmatch(words[0]) or (
            len(words) == 2 and not re.fullmatch(r"[0-9a-f]{8}", words[1])):
        raise BadInputError(f"{pointer}: does not name a saved state; the folder is damaged (restore it from a "
                            "backup or rebuild the database)", path=pointer)
    return words[0], int(words[1], 16) if len(words) == 2 else None


def load_database(cls, folder: Path):
    """The database in the state ``folder/CURRENT`` names; other formats, versions or damage are refused.

    Readers take no lock: a state is never changed once ``CURRENT`` names it, and when a writer deletes it while it
    is read (after committing a newer one), the read starts again from the newer ``CURRENT``.
    """
    if not (folder / POINTER).is_file():
        raise FileNotFoundError(f"{folder}: not a place database (no {POINTER}); save one first")
    pointer = _pointer(folder)
    while True:
        try:
            return _load_state(cls, folder / pointer[0], pointer[1])
        except (BadInputError, OSError):
            newer = _pointer(folder)
            if newer is None or newer == pointer:
                raise
            pointer = newer  # a writer replaced the state meanwhile


def _damaged(path: Path, what: str) -> BadInputError:
    return BadInputError(f"{path}: {what}; the saved place database is damaged: restore the folder from a backup "
                         "or rebuild the database", path=path)


def _check_file(path: Path, record: dict) -> None:
    """Refuse ``path`` unless its size and CRC32 are those ``database.json`` records."""
    if not path.is_file():
        raise _damaged(path, "is missing")
    crc, size = file_checksum(path)
    if size != record["bytes"] or crc != record["crc32"]:
        raise _damaged(path, f"does not match its checksum in {META} ({size} bytes, CRC32 {crc:08x}; recorded "
                             f"{record['bytes']} bytes, {record['crc32']:08x}): altered, truncated or swapped")


def _config(meta: dict, path: Path):
    """The DatabaseConfig ``database.json`` records; every key present, none unknown."""

    def build(kind, values, where):
        names = {f.name for f in dataclasses.fields(kind)}
        if not isinstance(values, dict) or set(values) != names:
            found = set(values) if isinstance(values, dict) else set()
            raise _damaged(path, _key_difference(where, names, found))
        return values

    config = dict(build(DatabaseConfig, meta["config"], "config"))
    config["index"] = IndexConfig(**build(IndexConfig, config["index"], "config.index"))
    try:
        return DatabaseConfig(**config)
    except (BadInputError, TypeError, ValueError) as error:
        raise _damaged(path, f"its config is not valid ({error})") from None


def _key_difference(where: str, expected: set, found: set) -> str:
    parts = []
    if expected - found:
        parts.append(f"missing {', '.join(sorted(expected - found))}")
    if found - expected:
        parts.append(f"unexpected {', '.join(sorted(found - expected))}")
    return f"{where} keys disagree with a place database's ({'; '.join(parts) or 'not an object'})"


def read_meta(path: Path, crc: int | None) -> dict:
    """``database.json`` at ``path``, checked against ``CURRENT``'s CRC32 and for its keys and their types."""

    if not path.is_file():
        raise _damaged(path, "is missing")
    if crc is not None and file_checksum(path)[0] != crc:
        raise _damaged(path, f"does not match its checksum in {POINTER}")
    meta = read_json(path, "place database description")
    if meta.get("format") != FORMAT:
        raise BadInputError(f"{path}: not a netvlad place database", path=path)
    version = meta.get("version")
    if version not in (1, 2, VERSION):
        raise BadInputError(f"{path}: place database version {version}, this netvlad reads versions 1 to {VERSION}; "
                            "rebuild it", path=path)
    expected = META_KEYS - ({"files", "local"} if version == 1 else {"local"} if version == 2 else set())
    if set(meta) != expected:
        raise _damaged(path, _key_difference("its", expected, set(meta)))
    whole = lambda v, low: isinstance(v, int) and not isinstance(v, bool) and v >= low  # noqa: E731
    if not (whole(meta["dim"], 1) and whole(meta["count"], 0) and whole(meta["trained_on"], 0)
            and meta["trained_on"] <= meta["count"] and isinstance(meta["monotonic"], bool)
            and (meta["fingerprint"] is None or isinstance(meta["fingerprint"], str))):
        raise _damaged(path, "dim, count, trained_on, monotonic or fingerprint has an impossible value")
    local = meta.get("local")
    if local is not None and not (isinstance(local, dict) and set(local) == {"cells", "channels"}
                                  and all(whole(v, 1) for v in local.values())):
        raise _damaged(path, "its local features' shape (cells, channels) has an impossible value")
    return meta


def _load_state(cls, state: Path, crc: int | None):
    meta = read_meta(state / META, crc)
    config = _config(meta, state / META)
    dim, count = meta["dim"], meta["count"]
    arrays = expected_arrays(dim, count)
    if meta.get("local") is not None:
        arrays |= expected_local(count, meta["local"])
    files = meta.get("files")
    if files is not None:
        names = {*arrays, NAMES} | ({"index.faiss"} if meta["trained_on"] else set())
        if not isinstance(files, dict) or set(files) != names or not all(
                isinstance(r, dict) and set(r) == {"crc32", "bytes"} for r in files.values()):
            raise _damaged(state / META, _key_difference("files", names, set(files) if isinstance(files, dict)
                                                         else set()))
        for name, record in files.items():
            _check_file(state / name, record)
    else:
        logger.warning("%s: saved without checksums by an older netvlad; the next save adds them", state)
    loaded = {}
    for name, (shape, dtype) in arrays.items():
        array = load_array(state / name, "place database array")
        if array.shape != shape or array.dtype != dtype:
            raise _damaged(state / name, f"holds {array.shape} {array.dtype}, not {shape} {dtype}")
        loaded[name] = array
    if not (np.isfinite(loaded["descriptors.npy"]).all() and np.isfinite(loaded["times.npy"]).all()
            and not np.isinf(loaded["positions.npy"]).any()):
        raise _damaged(state, "holds non-finite descriptors, times or positions")
    names = _read_names(state / NAMES, count)
    index = None
    if meta["trained_on"]:
        index = read_index(state / "index.faiss")
        alive = int(loaded["alive.npy"].sum())
        if index.ntotal != alive or index.d != dim:
            raise _damaged(state / "index.faiss", f"holds {index.ntotal} {index.d}-D entries, not {alive} {dim}-D")
    local = local_features(loaded, state / "local_cells.npy") if meta.get("local") else [None] * count
    db = cls(dim, config, meta["fingerprint"])
    db._restore(loaded["descriptors.npy"], loaded["alive.npy"], loaded["times.npy"], loaded["positions.npy"], names,
                index, meta, local)
    db._saved_as[state.parent.resolve()] = state.name
    return db


def _read_names(path: Path, count: int) -> list[str]:
    """The ``count`` names in ``path``, one a line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _damaged(path, "is missing") from None
    except UnicodeDecodeError:
        raise _damaged(path, "is not UTF-8 text") from None
    names = text.split("\n")
    if names.pop() != "" or len(names) != count:
        raise _damaged(path, f"holds {len(names)} names, not {count}")
    return names

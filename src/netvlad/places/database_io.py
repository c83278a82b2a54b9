"""Saving and loading a :class:`netvlad.places.database.PlaceDatabase`: a complete state folder, then ``CURRENT``.

A save writes ``state-N/`` in full (each file synced, the folder too), then replaces ``CURRENT`` (the name of the
state to load) atomically, then deletes older states. A crash before the swap leaves ``CURRENT`` naming the previous
complete state (the half-written folder is ignored and cleaned up by the next save); after it, the new one.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from netvlad.errors import BadInputError
from netvlad.files import atomic_write, load_array, read_json
from netvlad.search.index import read_index, write_index

logger = logging.getLogger(__name__)

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
    from netvlad.places.database import FORMAT, VERSION, DatabaseConfig
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

"""Descriptors on disk: a memory-mapped ``.npy`` matrix, a per-row status and the image names.

A folder holds ``descriptors.npy`` ``(N, dim)`` float32|float16, ``status.npy`` ``(N,)`` int8
(0 pending, 1 done, 2 undecodable), ``checksums.npy`` ``(N,)`` uint32 (each row's CRC32, its status byte included),
``names.txt`` (one name per line) and ``store.json``
(dim, dtype, model fingerprint, ``shards``: the shard plan). Rows are written and flushed batch by batch, so an
extraction that dies leaves every finished row on disk and the next run only extracts what is pending.

Several processes (torchrun ranks, or ``--shard I/N`` jobs of a scheduler array) fill one store: shard ``I`` of
``N`` owns the contiguous rows ``[I·n/N, (I+1)·n/N)``. Rows and status bytes are written with ``pwrite`` at their
exact byte offsets (never a whole memory page), so writers never overwrite each other's rows, even on a network
filesystem; a store is created in a temporary folder and renamed into place, so concurrent creators agree on one.
Every open checks the arrays against ``store.json`` and rows carry checksums: see :mod:`netvlad.extract.store_check`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netvlad.errors import BadInputError
from netvlad.extract.store_check import (
    BAD,
    CHECKSUMS,
    DONE,
    PENDING,
    layout_damage,
    refuse,
    refuse_status,
    repair_layout,
    row_checksums,
    rows_matching,
    status_damage,
    upgrade_checksums,
    write_rows,
)
from netvlad.files import load_array, read_json

logger = logging.getLogger(__name__)

FORMAT = "netvlad-descriptors"
VERSION = 3  # 2: rows carry checksums (checksums.npy); 3: each checksum covers its row's status byte too
DTYPES = {"float32": np.float32, "float16": np.float16}


def stored_fingerprint(folder: Path | str) -> str | None:
    """The fingerprint of the model that wrote the store in ``folder`` (a SHA-256 of its tensors); ``None`` where
    there is no readable store there or it names no model."""
    meta_path = Path(folder) / "store.json"
    if not meta_path.is_file():
        return None
    try:
        meta = read_json(meta_path, "descriptor store description")
    except BadInputError:  # a damaged store is refused by whoever opens it, naming the file
        return None
    return meta.get("fingerprint") if isinstance(meta, dict) else None


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the part of a store's rows one process extracts."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise BadInputError(f"shard {self.index}/{self.count} does not exist: the form is I/N with 0 ≤ I < N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"1/4"`` -> Shard(1, 4); anything else is refused with the form ``I/N``."""
        parts = str(text).split("/")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise BadInputError(f"shard {text!r} is not of the form I/N (shard I of N, 0 ≤ I < N), e.g. 0/4")
        return cls(int(parts[0]), int(parts[1]))

    def rows(self, total: int) -> np.ndarray:
        """The contiguous rows of ``total`` this shard owns."""
        return np.arange(self.index * total // self.count, (self.index + 1) * total // self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class DescriptorStore:
    """Descriptors ``(N, dim)`` of named images in ``folder``, memory-mapped; see the module docstring.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> folder = tempfile.TemporaryDirectory()
        >>> store = DescriptorStore.create(f"{folder.name}/store", ["a.jpg", "b.jpg", "c.jpg"], dim=4)
        >>> store.write(np.array([0, 2]), np.eye(4, dtype=np.float32)[:2])
        >>> store.mark_bad([1])  # b.jpg could not be decoded
        >>> reopened = DescriptorStore.open(f"{folder.name}/store")
        >>> reopened.complete, reopened.valid(), reopened.bad()
        (True, array([ True, False,  True]), ['b.jpg'])
        >>> reopened.load()[2]
        array([0., 1., 0., 0.], dtype=float32)
        >>> folder.cleanup()
    """

    def __init__(self, folder: Path, names: tuple[str, ...], descriptors: np.ndarray, status: np.ndarray,
                 meta: dict) -> None:
        self.folder, self.names, self.descriptors, self.status, self.meta = folder, names, descriptors, status, meta
        self.checksums: np.ndarray | None = None  # (N,) uint32 CRC32 of each row; None in a store from before them

    # ---- opening -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: Path | str, names: Sequence[str], dim: int, dtype: str = "float32",
               fingerprint: str | None = None, root: str | None = None, shards: int = 1) -> DescriptorStore:
        """Open the store in ``folder`` to continue it, or create it; a store of other images/model is refused.

        ``shards`` is the plan a new store records (how many processes fill it). Safe when several processes
        create the same store at once: one creates it, the others open it.
        """
        folder = Path(folder)
        names = tuple(str(n) for n in names)
        if dtype not in DTYPES:
            raise ValueError(f"descriptor dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if any("\n" in n for n in names):
            raise ValueError("image names must not contain line breaks")
        if not (folder / "store.json").is_file():
            cls._create_atomically(folder, names, dim, dtype, fingerprint, root, shards)
        store = cls.open(folder, mode="r+")
        store._check_compatible(names, dim, dtype, fingerprint)
        if store.num_done:
            logger.info("continuing descriptor store %s: %d of %d done", folder, store.num_done, len(store))
        return store

    @staticmethod
    def _create_atomically(folder: Path, names: tuple[str, ...], dim: int, dtype: str, fingerprint: str | None,
                           root: str | None, shards: int) -> None:
        """Write a new store in a temporary sibling folder and rename it to ``folder`` (losing a race is fine)."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        temporary = folder.parent / f".{folder.name}.creating-{uuid.uuid4().hex[:12]}"
        temporary.mkdir()
        try:
            meta = {"format": FORMAT, "version": VERSION, "dim": int(dim), "dtype": dtype, "count": len(names),
                    "fingerprint": fingerprint, "root": root, "shards": int(shards)}
            (temporary / "names.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
            # zero-filled arrays (header written, data sparse); no msync: other processes see them through the page
            # cache at once, and a synced tail page (≈ 4 ms each here) would not make the new store crash-safe anyway
            np.lib.format.open_memmap(temporary / "descriptors.npy", mode="w+", dtype=DTYPES[dtype],
                                      shape=(len(names), int(dim)))
            np.lib.format.open_memmap(temporary / "status.npy", mode="w+", dtype=np.int8, shape=(len(names),))
            np.lib.format.open_memmap(temporary / CHECKSUMS, mode="w+", dtype=np.uint32, shape=(len(names),))
            (temporary / "store.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
            try:
                os.rename(temporary, folder)  # atomic; replaces an empty folder, fails on a filled one
            except OSError:
                if not (folder / "store.json").is_file():
                    raise BadInputError(f"{folder}: folder exists and is not a descriptor store; choose an empty "
                                        "or new folder", path=folder) from None
                logger.debug("%s was created by another process meanwhile", folder)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)

    @classmethod
    def open(cls, folder: Path | str, mode: str = "r") -> DescriptorStore:
        """Open an existing store read-only (``"r"``) or for writing (``"r+"``)."""
        folder = Path(folder)
        meta_path = folder / "store.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder}: not a descriptor store (no store.json); extract descriptors first")
        meta = read_json(meta_path, "descriptor store description")
        if meta.get("format") != FORMAT:
            raise BadInputError(f"{meta_path}: not a netvlad descriptor store", path=meta_path)
        try:
            names = tuple((folder / "names.txt").read_text(encoding="utf-8").splitlines())
        except UnicodeDecodeError:
            raise BadInputError(f"{folder / 'names.txt'}: not a text file of image names; delete the folder and "
                                "extract again", path=folder / "names.txt") from None
        if meta.get("count", len(names)) != len(names):
            raise BadInputError(f"{folder / 'names.txt'}: {len(names)} names where store.json says {meta['count']}; "
                                "delete the folder and extract again", path=folder / "names.txt")
        checked = int(meta.get("version", 1)) >= 2
        damage = layout_damage(folder, meta, len(names), checked)
        if damage and mode == "r":
            refuse(folder, damage)
        if damage:  # a writer: repair, the lost rows become pending and are extracted again
            repair_layout(folder, meta, len(names), damage)
        if mode != "r" and int(meta.get("version", 1)) < VERSION:
            meta = upgrade_checksums(folder, meta, VERSION)
        damaged = status_damage(folder, meta)
        if len(damaged) and mode == "r":
            refuse_status(folder, names, damaged)
        descriptors = load_array(folder / "descriptors.npy", "descriptor array", mmap_mode=mode)
        status = load_array(folder / "status.npy", "descriptor status array", mmap_mode=mode)
        if len(damaged):  # a writer: those rows become pending and are extracted again
            logger.warning("%s: %d damaged status byte(s) (first: row %d): those rows become pending",
                           folder / "status.npy", len(damaged), int(damaged[0]))
            write_rows(folder / "status.npy", status.offset, damaged, np.full(len(damaged), PENDING, np.int8))
        store = cls(folder, names, descriptors, status, meta)
        store.checksums = (load_array(folder / CHECKSUMS, "descriptor checksums", mmap_mode=mode)
                           if int(meta.get("version", 1)) >= 2 else None)
        return store

    @property
    def covers_status(self) -> bool:
        """Whether each row's checksum covers its status byte (version 3)."""
        return int(self.meta.get("version", 1)) >= 3

    def _check_compatible(self, names: tuple[str, ...], dim: int, dtype: str, fingerprint: str | None) -> None:
        problems = []
        if names != self.names:
            problems.append(f"other images ({len(self.names)} stored, {len(names)} asked)")
        if dim != self.dim:
            problems.append(f"descriptor dim {self.dim}, not {dim}")
        if dtype != self.meta["dtype"]:
            problems.append(f"dtype {self.meta['dtype']}, not {dtype}")
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            problems.append(f"model {self.fingerprint}, not {fingerprint}")
        if problems:
            raise BadInputError(f"{self.folder}: holds descriptors of {'; '.join(problems)}; "
                             "choose another folder or delete this one")

    # ---- state ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def fingerprint(self) -> str | None:
        return self.meta.get("fingerprint")

    @property
    def shards(self) -> int:
        """How many processes the store was planned for (1 for stores written before shard plans existed)."""
        return int(self.meta.get("shards", 1))

    def check_plan(self, shard: Shard) -> None:
        """Refuse to extract ``shard`` into an unfinished store planned for another number of shards."""
        if shard.count != self.shards and not self.complete:
            raise BadInputError(
                f"{self.folder}: store planned for {self.shards} shard(s) ({self.num_done} of {len(self)} rows "
                f"done) but this run has {shard.count}; finish it with shard=Shard(i, {self.shards}) for each i "
                "(or a process group of that size), or delete the folder", path=self.folder / "store.json",
                hint=f"run `netvlad extract` under torchrun --nproc_per_node {self.shards}, or with --shard "
                     f"I/{self.shards} for each I")

    def pending_in(self, shard: Shard) -> np.ndarray:
        """Rows of ``shard`` still to extract."""
        rows = shard.rows(len(self))
        return rows[np.asarray(self.status[rows]) == PENDING]

    @property
    def num_done(self) -> int:
        return int((np.asarray(self.status) == DONE).sum())

    @property
    def complete(self) -> bool:
        """True when no row is pending (rows may be done or bad)."""
        return not bool((np.asarray(self.status) == PENDING).any())

    def pending(self) -> np.ndarray:
        """Indices of the rows still to extract."""
        return np.flatnonzero(np.asarray(self.status) == PENDING)

    def bad(self) -> list[str]:
        """Names of the images marked undecodable."""
        return [self.names[i] for i in np.flatnonzero(np.asarray(self.status) == BAD)]

    def valid(self) -> np.ndarray:
        """Boolean mask ``(N,)`` of rows holding a descriptor."""
        return np.asarray(self.status) == DONE

    # ---- writing --------------------------------------------------------------------------------------
    def write(self, indices: np.ndarray, descriptors: np.ndarray) -> None:
        """Store ``descriptors`` ``(B, dim)`` at rows ``indices`` and mark them done (rows are synced first)."""
        if descriptors.shape[1:] != (self.dim,):
            raise BadInputError(f"{self.folder}: store holds {self.dim}-D descriptors, got {descriptors.shape}")
        indices = np.asarray(indices, dtype=np.int64)
        values = np.ascontiguousarray(np.asarray(descriptors).astype(self.descriptors.dtype, copy=False))
        write_rows(self.folder / "descriptors.npy", self.descriptors.offset, indices, values)
        self._mark(indices, values, DONE)

    def _mark(self, indices: np.ndarray, values: np.ndarray, mark: int) -> None:
        """The rows' checksums (synced, covering ``mark`` where the version does), then their status ``mark``."""
        marks = np.full(len(indices), mark, np.int8)
        if self.checksums is not None:
            sums = row_checksums(values, marks if self.covers_status else None)
            write_rows(self.folder / CHECKSUMS, self.checksums.offset, indices, sums)
        # no sync: the rows and checksums are on disk already, so a crash leaves each mark either written (its row
        # proves itself) or lost (the row stays pending and is extracted again); a later sync of this file by any
        # writer carries only marks whose rows were synced before them
        write_rows(self.folder / "status.npy", self.status.offset, indices, marks, sync=False)

    def mark_pending(self, indices: Sequence[int]) -> None:
        """Mark rows to be extracted again (no sync: a lost pending mark leaves what made it necessary)."""
        indices = np.asarray(indices, dtype=np.int64)
        write_rows(self.folder / "status.npy", self.status.offset, indices, np.full(len(indices), PENDING, np.int8),
                   sync=False)

    def mark_bad(self, indices: Sequence[int]) -> None:
        """Mark rows as undecodable images (their checksums cover the mark and the rows' bytes as they are)."""
        indices = np.asarray(indices, dtype=np.int64)
        self._mark(indices, np.asarray(self.descriptors[indices]), BAD)

    # ---- reading -------------------------------------------------------------------------------------
    def require_complete(self, how: str = "run the extraction again on the same folder") -> None:
        """Refuse to search a store with pending rows, saying how many and how to finish them (``how``)."""
        pending = len(self.pending())
        if pending:
            raise BadInputError(f"{self.folder}: {pending} of {len(self)} descriptors are still pending "
                                f"(extraction was interrupted); {how} to finish them", path=self.folder)

    def check_source(self, fingerprint: str | None = None, dim: int | None = None) -> None:
        """Refuse a store written by another model (fingerprint) or holding another descriptor dim."""
        if dim is not None and dim != self.dim:
            raise BadInputError(f"{self.folder}: holds {self.dim}-D descriptors but the model gives {dim}-D ones; "
                                "use the store of this model or extract again", path=self.folder)
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            raise BadInputError(f"{self.folder}: written by model {self.fingerprint}, not by {fingerprint}; use the "
                                "store of this model or extract again", path=self.folder)

    def load(self, dtype=np.float32) -> np.ndarray:
        """All descriptors in memory ``(N, dim)`` (rows not done are zero), each done row checked by its checksum."""
        out = np.asarray(self.descriptors, dtype=dtype)
        self.verify_rows(np.flatnonzero(self.valid()), np.asarray(self.descriptors)[self.valid()])
        return out

    def verify_rows(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Refuse rows ``(B,)`` read as ``values`` ``(B, dim)`` (in the store's dtype) that fail their checksum."""
        if self.checksums is None or len(rows) == 0:
            return
        values = np.asarray(values).astype(self.descriptors.dtype, copy=False)  # float16 -> float32 -> float16 is exact
        marks = np.full(len(rows), DONE, np.int8) if self.covers_status else None  # only done rows are read
        wrong = np.flatnonzero(row_checksums(values, marks) != np.asarray(self.checksums)[rows])
        if len(wrong):
            first = int(rows[wrong[0]])
            raise BadInputError(
                f"{self.folder / 'descriptors.npy'}: {len(wrong)} row(s) fail their checksum (first: row {first}, "
                f"{self.names[first]}); run `netvlad store verify {self.folder}` to mark them pending, then "
                "extract again", path=self.folder / "descriptors.npy")

    def verify(self) -> np.ndarray:
        """Check every done or undecodable row (and its status byte) against its checksum; mark the damaged ones
        pending (store open ``"r+"``) -> rows."""
        if self.checksums is None:
            return np.empty(0, dtype=np.int64)
        marked = np.flatnonzero(np.asarray(self.status) != PENDING)
        damaged = marked[~rows_matching(self.folder, marked, with_status=self.covers_status)]
        if len(damaged):
            write_rows(self.folder / "status.npy", self.status.offset, damaged, np.full(len(damaged), PENDING, np.int8))
        return damaged


@dataclass(frozen=True)
class StoreCheck:
    """What :func:`verify_stores` found in one store: its rows, those done and pending after the check, the arrays
    whose layout was repaired, the rows that failed their CRC32, and whether it has row checksums at all."""

    folder: Path
    rows: int
    done: int
    pending: int
    repaired: tuple[str, ...]
    failed: int
    checksummed: bool

    @property
    def damaged(self) -> bool:
        """True when anything was repaired or failed its checksum (those rows are pending now)."""
        return bool(self.repaired) or self.failed > 0


def stores_in(folder: Path | str) -> list[Path]:
    """The descriptor stores at ``folder`` or one or two levels below it."""
    folder = Path(folder)
    found = [p.parent for pattern in ("store.json", "*/store.json", "*/*/store.json") for p in folder.glob(pattern)]
    if not found:
        raise FileNotFoundError(f"{folder}: no descriptor store here (no store.json in it or below it); give the "
                                "folder of `netvlad extract --out`, `evaluate --store` or `index build --out`")
    return sorted(found)


def verify_stores(folder: Path | str) -> list[StoreCheck]:
    """Check every store in ``folder`` (:func:`stores_in`): each array's size against store.json and each done row
    against its CRC32; damaged or lost rows become pending, for the command that extracted the store to redo."""
    from netvlad.files import read_json

    checks = []
    for found in stores_in(folder):
        meta = read_json(found / "store.json", "descriptor store description")
        names = (found / "names.txt").read_text(encoding="utf-8").splitlines()
        layout = layout_damage(found, meta, len(names), int(meta.get("version", 1)) >= 2)
        store = DescriptorStore.open(found, mode="r+")  # repairs the layout: lost rows become pending
        damaged = store.verify()
        checks.append(StoreCheck(found, len(store), store.num_done, len(store.pending()),
                                 tuple(d.path.name for d in layout), len(damaged), store.checksums is not None))
    return checks

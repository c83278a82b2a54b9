"""A descriptor store proves its rows: file sizes checked against ``store.json`` and a CRC32 per row.

``checksums.npy`` ``(N,)`` uint32 holds the CRC32 (zlib) of each row's bytes followed by its status byte (stores of
version 3; version 2: the row's bytes alone). A write syncs the rows' bytes and their checksums, then writes their
status bytes without a sync of their own (an undecodable row: its checksum over its bytes as they are, then its
mark): whatever part of a write a crash loses, a status byte on disk that says done or undecodable has its row and
checksum on disk before it, and one that was lost leaves its row pending, to be extracted again. So a status byte
proves itself too: a value that is none of pending, done and undecodable, or a done or undecodable mark its row's
checksum does not match, is damage, never a row silently left out of searches; a lost status array is rebuilt from
the checksums (each row proves itself done or undecodable, or is pending). On every open the three arrays' headers
and byte sizes are checked against ``store.json``: a reader refuses a damaged store with one line naming the file
and the fix; a writer (a command that extracts) repairs the layout instead — never by using a short file extended
with zeros — marks every row it cannot prove pending, and extracts those again.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netvlad.errors import BadInputError
from netvlad.files import atomic_write, write_error

logger = logging.getLogger(__name__)

CHECKSUMS = "checksums.npy"
_sync = getattr(os, "fdatasync", os.fsync)  # rows and checksums to disk before the status says done (macOS: fsync)
PENDING, DONE, BAD = 0, 1, 2


def row_checksums(values: np.ndarray, status: np.ndarray | None = None) -> np.ndarray:
    """CRC32 ``(B,)`` uint32 of each row's bytes of ``values`` ``(B, dim)``, continued over its status byte when
    ``status`` ``(B,)`` is given (a store of version 3)."""
    values = np.ascontiguousarray(values)
    if len(values) == 0:
        return np.empty(0, dtype=np.uint32)
    rows = values.view(np.uint8).reshape(len(values), -1)
    if status is None:
        return np.fromiter((zlib.crc32(row) for row in rows), dtype=np.uint32, count=len(values))
    marks = np.asarray(status, dtype=np.int8).view(np.uint8)
    return np.fromiter((zlib.crc32(mark.tobytes(), zlib.crc32(row)) for row, mark in zip(rows, marks, strict=True)),
                       dtype=np.uint32, count=len(values))


@dataclass(frozen=True)
class Damage:
    """One array of a store that does not match ``store.json``: ``rows`` of its rows are whole (−1: unreadable)."""

    path: Path
    what: str
    rows: int
    size: int = 0  # the right size in bytes (when the header is right)


def _header(path: Path) -> tuple[tuple, np.dtype, int] | None:
    """(shape, dtype, data offset) of the ``.npy`` at ``path``; None when it is missing or not a readable header."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(handle)
            return (shape, dtype, handle.tell()) if not fortran else None
    except (OSError, ValueError, EOFError):
        return None


def check_array(path: Path, shape: tuple, dtype) -> Damage | None:
    """None when ``path`` is an ``.npy`` of exactly ``shape`` and ``dtype`` and byte size; its Damage otherwise."""
    header = _header(path)
    if header is None:
        return Damage(path, "is missing or not a readable .npy file", -1)
    found_shape, found_dtype, offset = header
    if tuple(found_shape) != tuple(shape) or found_dtype != np.dtype(dtype):
        return Damage(path, f"holds {found_shape} {found_dtype}, not {shape} {np.dtype(dtype)}", -1)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    size, expected = path.stat().st_size, offset + shape[0] * row_bytes
    if size == expected:
        return None
    whole = min(shape[0], max(0, size - offset) // row_bytes)
    kind = "short (truncated)" if size < expected else "over-long"
    return Damage(path, f"is {kind}: {size} bytes where {shape[0]} rows take {expected}", whole, expected)


def layout_damage(folder: Path, meta: dict, count: int, checksums: bool) -> list[Damage]:
    """Every array of the store in ``folder`` whose header or size disagrees with ``store.json``."""
    arrays = [("descriptors.npy", (count, int(meta["dim"])), meta["dtype"]), ("status.npy", (count,), np.int8)]
    if checksums:
        arrays.append((CHECKSUMS, (count,), np.uint32))
    found = (check_array(folder / name, shape, dtype) for name, shape, dtype in arrays)
    return [damage for damage in found if damage is not None]


def refuse(folder: Path, damage: list[Damage]) -> None:
    """The one-line error of a reader facing a damaged store: the file, what is wrong, and the fix."""
    first = damage[0]
    raise BadInputError(
        f"{first.path}: {first.what}; this store cannot be used as it is: run `netvlad store verify {folder}` "
        "(marks the lost rows pending), then the command that extracted it (`netvlad extract`, `evaluate --store`, "
        "`index build`) to extract them again", path=first.path)


def _resize(damage: Damage, shape: tuple, dtype) -> np.ndarray:
    """Give the array at ``damage.path`` its right size (a new zero array when its header is wrong) -> lost rows."""
    if damage.rows < 0:
        np.lib.format.open_memmap(damage.path, mode="w+", dtype=dtype, shape=shape).flush()
    else:
        os.truncate(damage.path, damage.size)  # cuts an over-long file; a short one's lost rows become pending
    return np.arange(max(damage.rows, 0), shape[0])


def repair_layout(folder: Path, meta: dict, count: int, damage: list[Damage]) -> None:
    """Give every damaged array its right size again; rows it lost (or cannot prove) become pending."""
    dim, dtype = int(meta["dim"]), meta["dtype"]
    shapes = {"descriptors.npy": ((count, dim), dtype), "status.npy": ((count,), np.int8),
              CHECKSUMS: ((count,), np.uint32)}
    lost: dict[str, np.ndarray] = {}
    for item in damage:
        logger.warning("%s %s: repairing; rows it lost become pending and are extracted again", item.path, item.what)
        shape, kind = shapes[item.path.name]
        lost[item.path.name] = _resize(item, shape, kind)
    status = np.load(folder / "status.npy", mmap_mode="r+")
    for name in ("descriptors.npy", CHECKSUMS):
        if name in lost:
            status[lost[name]] = PENDING
    if "status.npy" in lost:  # what was done is unknown: rows proven by their checksum are done, the rest pending
        status[:] = PENDING
        if CHECKSUMS not in lost:
            rows, covered = np.arange(count), _covers_status(meta)
            done = rows_matching(folder, rows, with_status=covered, as_status=DONE)
            bad = ~done & rows_matching(folder, rows, as_status=BAD) if covered else np.zeros(count, bool)
            status[:] = np.where(done, DONE, np.where(bad, BAD, PENDING))
    else:  # every row still marked done must prove itself
        done = np.flatnonzero(np.asarray(status) == DONE)
        status[done[~rows_matching(folder, done, with_status=_covers_status(meta))]] = PENDING
    status.flush()
    del status


def _covers_status(meta: dict) -> bool:
    return int(meta.get("version", 1)) >= 3


def rows_matching(folder: Path, rows: np.ndarray, block: int = 4096, with_status: bool = True,
                  as_status: int | None = None) -> np.ndarray:
    """Boolean ``(len(rows),)``: the row's bytes in ``descriptors.npy`` (and, ``with_status``, its status byte, or
    ``as_status`` in its place) match its stored CRC32."""
    descriptors = np.load(folder / "descriptors.npy", mmap_mode="r")
    checksums = np.load(folder / CHECKSUMS, mmap_mode="r")
    status = np.load(folder / "status.npy", mmap_mode="r") if with_status else None
    out = np.zeros(len(rows), dtype=bool)
    for start in range(0, len(rows), block):
        part = np.asarray(rows[start:start + block])
        marks = None if status is None else (
            np.full(len(part), as_status, np.int8) if as_status is not None else np.asarray(status[part]))
        out[start:start + len(part)] = row_checksums(np.asarray(descriptors[part]), marks) == checksums[part]
    return out


def status_damage(folder: Path, meta: dict) -> np.ndarray:
    """Rows whose status byte is none of pending, done and undecodable, or (version 3) an undecodable mark its
    checksum does not prove; done marks prove themselves when their rows are read. Reads the status array and the
    undecodable rows only."""
    status = np.asarray(np.load(folder / "status.npy", mmap_mode="r"))
    invalid = np.flatnonzero((status != PENDING) & (status != DONE) & (status != BAD))
    if not _covers_status(meta):
        return invalid
    bad = np.flatnonzero(status == BAD)
    return np.union1d(invalid, bad[~rows_matching(folder, bad)])


def refuse_status(folder: Path, names: tuple[str, ...], rows: np.ndarray) -> None:
    """The one-line error of a reader facing status bytes that do not prove themselves."""
    path, first = folder / "status.npy", int(rows[0])
    raise BadInputError(f"{path}: {len(rows)} status byte(s) are damaged (first: row {first}, {names[first]}); run "
                        f"`netvlad store verify {folder}` (marks them pending), then the command that extracted the "
                        "store to extract them again", path=path)


def upgrade_checksums(folder: Path, meta: dict, version: int) -> dict:
    """Give a store of an older version checksums covering each row and its status byte -> new meta. Version 1
    (no checksums): of the rows as they are now; version 2: done rows must first match their old checksum (else
    they become pending)."""
    descriptors = np.load(folder / "descriptors.npy", mmap_mode="r")
    old = int(meta.get("version", 1))
    status = np.load(folder / "status.npy", mmap_mode="r+")
    if old == 2:
        done = np.flatnonzero(np.asarray(status) == DONE)
        status[done[~rows_matching(folder, done, with_status=False)]] = PENDING
        status.flush()
    mode = "r+" if old == 2 else "w+"
    sums = np.lib.format.open_memmap(folder / CHECKSUMS, mode=mode, dtype=np.uint32, shape=(len(descriptors),))
    for start in range(0, len(descriptors), 4096):
        part = slice(start, start + 4096)
        sums[part] = row_checksums(np.asarray(descriptors[part]), np.asarray(status[part]))
    sums.flush()
    del status, sums
    meta = meta | {"version": version}
    atomic_write(folder / "store.json", lambda path: path.write_text(json.dumps(meta, indent=1), encoding="utf-8"))
    logger.info("%s: row checksums (covering each status byte) added to a store written by an older netvlad",
                folder)
    return meta


def write_rows(path: Path, offset: int, rows: np.ndarray, values: np.ndarray, sync: bool = True) -> None:
    """Write ``values`` ``(B, ...)`` at ``rows`` ``(B,)`` of the ``.npy`` at ``path`` (data starting at byte
    ``offset``) byte-exactly, one ``pwrite`` per run of consecutive rows, then (``sync``) sync. Writers of disjoint
    rows never overwrite each other's bytes, even on a network filesystem (no read-modify-write of pages)."""
    if len(rows) == 0:
        return
    rows = np.asarray(rows, dtype=np.int64)
    if np.any(rows[1:] < rows[:-1]):  # sorted already (as extraction writes them): no copy of the values
        order = np.argsort(rows, kind="stable")
        rows, values = rows[order], values[order]
    values = np.ascontiguousarray(values)
    row_bytes = values[0].nbytes
    starts = np.flatnonzero(np.diff(rows, prepend=rows[0] - 2) != 1)
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            for begin, end in zip(starts, [*starts[1:], len(rows)], strict=True):
                os.pwrite(fd, values[begin:end], offset + int(rows[begin]) * row_bytes)  # the buffer, no copy
            if sync:
                _sync(fd)
        finally:
            os.close(fd)
    except OSError as error:  # the rows not marked done stay pending: a rerun extracts them
        raise write_error(error, path) from None

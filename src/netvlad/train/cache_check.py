"""The memory-mapped training cache proves its rows: a CRC32 per row in a file beside it, checked before mining.

Each rank writes its block of rows into ``descriptors.npy``, syncs it, then writes those rows' CRC32 (zlib) into
``descriptors.crc32.npy`` ``(N,)`` uint32. When every rank is done, every rank checks both files' sizes against
the cache's shape and every row against its checksum before it reads one: a truncated, extended or altered cache
(a full disk, a filesystem that lost a write, another process) is rebuilt once, with a warning naming the file,
and refused if it is damaged again — never mined from.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from netvlad.extract.store_check import check_array, row_checksums, write_rows

SUFFIX = ".crc32.npy"


def sums_path(path: Path) -> Path:
    """The checksum file of the cache at ``path`` (``descriptors.npy`` -> ``descriptors.crc32.npy``)."""
    return path.with_name(path.name.removesuffix(".npy") + SUFFIX)


def create(path: Path, shape: tuple[int, int], dtype: str) -> None:
    """Fresh zero-filled cache and checksum files, each written beside and renamed over the old one."""
    for target, target_shape, target_dtype in ((path, shape, dtype), (sums_path(path), shape[:1], np.uint32)):
        fresh = target.with_name(target.name + ".new")
        np.lib.format.open_memmap(fresh, mode="w+", dtype=target_dtype, shape=target_shape).flush()
        os.replace(fresh, target)  # maps of the previous cache stay valid


def write_block(path: Path, offsets: tuple[int, int], rows: np.ndarray, values: np.ndarray) -> None:
    """Write ``values`` ``(B, dim)`` at ``rows`` of the cache, synced, then their checksums (data offsets of both)."""
    write_rows(path, offsets[0], rows, values)
    write_rows(sums_path(path), offsets[1], rows, row_checksums(values))


def offsets(path: Path) -> tuple[int, int]:
    """Where the data of the cache and of its checksum file start (bytes)."""
    return np.load(path, mmap_mode="r").offset, np.load(sums_path(path), mmap_mode="r").offset


def damage(path: Path, shape: tuple[int, int], dtype: str, block: int = 4096) -> str | None:
    """None when the cache at ``path`` has its size and every row matches its checksum; else what is wrong."""
    for target, target_shape, target_dtype in ((path, shape, dtype), (sums_path(path), shape[:1], np.uint32)):
        found = check_array(target, target_shape, target_dtype)
        if found is not None:
            return f"{target} {found.what}"
    values, sums = np.load(path, mmap_mode="r"), np.load(sums_path(path), mmap_mode="r")
    bad = [start + np.flatnonzero(row_checksums(np.asarray(values[start:start + block]))
                                  != sums[start:start + block]) for start in range(0, shape[0], block)]
    bad = np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)
    if len(bad):
        return f"{path}: {len(bad)} of {shape[0]} rows do not match their checksums (first: row {int(bad[0])})"
    return None

"""Descriptors on disk: a memory-mapped ``.npy`` matrix, a per-row status and the image names.

A folder holds ``descriptors.npy`` ``(N, dim)`` float32|float16, ``status.npy`` ``(N,)`` int8
(0 pending, 1 done, 2 undecodable), ``names.txt`` (one name per line) and ``store.json``
(dim, dtype, model fingerprint). Rows are written and flushed batch by batch, so an extraction
that dies leaves every finished row on disk and the next run only extracts what is pending.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from netvlad.errors import BadInputError
from netvlad.files import load_array, read_json

logger = logging.getLogger(__name__)

FORMAT = "netvlad-descriptors"
PENDING, DONE, BAD = 0, 1, 2
DTYPES = {"float32": np.float32, "float16": np.float16}


class DescriptorStore:
    """Descriptors ``(N, dim)`` of named images in ``folder``, memory-mapped; see the module docstring."""

    def __init__(self, folder: Path, names: tuple[str, ...], descriptors: np.ndarray, status: np.ndarray,
                 meta: dict) -> None:
        self.folder, self.names, self.descriptors, self.status, self.meta = folder, names, descriptors, status, meta

    # ---- opening -------------------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: Path | str, names: Sequence[str], dim: int, dtype: str = "float32",
               fingerprint: str | None = None, root: str | None = None) -> DescriptorStore:
        """Open the store in ``folder`` to continue it, or create it; a store of other images/model is refused."""
        folder = Path(folder)
        names = tuple(str(n) for n in names)
        if dtype not in DTYPES:
            raise ValueError(f"descriptor dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if any("\n" in n for n in names):
            raise ValueError("image names must not contain line breaks")
        if (folder / "store.json").is_file():
            store = cls.open(folder, mode="r+")
            store._check_compatible(names, dim, dtype, fingerprint)
            logger.info("continuing descriptor store %s: %d of %d done", folder, store.num_done, len(store))
            return store
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "version": 1, "dim": int(dim), "dtype": dtype, "count": len(names),
                "fingerprint": fingerprint, "root": root}
        (folder / "names.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
        np.lib.format.open_memmap(folder / "descriptors.npy", mode="w+", dtype=DTYPES[dtype],
                                  shape=(len(names), int(dim))).flush()
        np.lib.format.open_memmap(folder / "status.npy", mode="w+", dtype=np.int8, shape=(len(names),)).flush()
        (folder / "store.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")  # last: marks it complete
        return cls.open(folder, mode="r+")

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
        descriptors = load_array(folder / "descriptors.npy", "descriptor array", mmap_mode=mode)
        status = load_array(folder / "status.npy", "descriptor status array", mmap_mode=mode)
        if descriptors.shape != (len(names), meta.get("dim")) or status.shape != (len(names),):
            raise BadInputError(f"{folder}: descriptor store is inconsistent ({descriptors.shape} descriptors, "
                             f"{len(names)} names, dim {meta['dim']}); delete the folder and extract again")
        return cls(folder, names, descriptors, status, meta)

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
        """Store ``descriptors`` ``(B, dim)`` at rows ``indices`` and mark them done (data is flushed first)."""
        if descriptors.shape[1:] != (self.dim,):
            raise BadInputError(f"{self.folder}: store holds {self.dim}-D descriptors, got {descriptors.shape}")
        self.descriptors[indices] = descriptors.astype(self.descriptors.dtype, copy=False)
        self.descriptors.flush()
        self.status[indices] = DONE
        self.status.flush()

    def mark_bad(self, indices: Sequence[int]) -> None:
        """Mark rows as undecodable images."""
        self.status[np.asarray(indices, dtype=np.int64)] = BAD
        self.status.flush()

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
        """All descriptors in memory ``(N, dim)`` (rows not done are zero)."""
        return np.asarray(self.descriptors, dtype=dtype)

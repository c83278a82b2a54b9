"""Pittsburgh 30k/250k, Tokyo 24/7 and Tokyo Time Machine ``dbStruct`` .mat files (classic and v7.3/HDF5).

Fields (as in the official ``dbBase.m``): whichSet, dbImageFns, utmDb (2×N), qImageFns, utmQ (2×Q), numImages,
numQueries, posDistThr, posDistSqThr, nonTrivPosDistSqThr, and dbTimeStamp / qTimeStamp for Tokyo TM. Image file
names are relative to an image root (``image_root``, default the .mat's folder); database and query folders
under it are found by probing the first file name (or named with ``database`` / ``queries``).
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from netvlad.data.dataset import GeoDataset, ImageList
from netvlad.data.info import DatasetInfo
from netvlad.data.readers.common import DatasetError, Skips, check_files
from netvlad.data.readers.registry import ReadOptions, register_reader
from netvlad.data.readers.tokyo import CUTOUTS_PER_PANORAMA, is_tokyo247, png_names, tokyo_info

logger = logging.getLogger(__name__)

REQUIRED = ("dbImageFns", "utmDb", "qImageFns", "utmQ")
KNOWN = REQUIRED + ("whichSet", "numImages", "numQueries", "posDistThr", "posDistSqThr", "nonTrivPosDistSqThr",
                    "dbTimeStamp", "qTimeStamp")
DB_FOLDERS = ("", "images", "database", "db")
QUERY_FOLDERS = ("queries_real", "queries", "query", "247query_v3", "247query_subset_v2", "images", "")


def detect(path: Path, options: ReadOptions) -> bool:
    """A file ending in .mat."""
    return path.is_file() and path.suffix.lower() == ".mat"


def _h5_value(f: h5py.File, node):
    """A MATLAB v7.3 value -> str, list (cell) or ndarray in MATLAB's (column-major) shape."""
    kind = _class(node)
    data = node[()]
    if kind == "char":
        return "" if node.attrs.get("MATLAB_empty", 0) else _chars(data)
    if kind == "cell":
        refs = np.asarray(data).T.ravel()
        if len(refs) and _class(f[refs[0]]) == "char":  # a cell of file names: low-level reads (250k in seconds)
            return [_chars(_read_ref(f, ref)) for ref in refs]
        return [_h5_value(f, f[ref]) for ref in refs]
    return np.asarray(data).T


def _class(node) -> str:
    kind = node.attrs.get("MATLAB_class", b"")
    return kind.decode() if isinstance(kind, bytes) else str(kind)


def _read_ref(f: h5py.File, ref) -> np.ndarray:
    """The uint16 array a reference points to, read without building h5py's high-level objects."""
    dataset = h5py.h5r.dereference(ref, f.id)
    buffer = np.empty(dataset.shape, dtype="<u2")
    dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, buffer)
    return buffer


def _chars(data: np.ndarray) -> str:
    """MATLAB uint16 (UTF-16) characters -> str."""
    return np.asarray(data, dtype="<u2").T.tobytes().decode("utf-16-le")


def load_v73(path: Path) -> dict:
    """The ``dbStruct`` fields of a v7.3 (HDF5) .mat file."""
    try:
        with h5py.File(path, "r") as f:
            if "dbStruct" not in f:
                raise DatasetError(f"{path}: no dbStruct variable (found {', '.join(f.keys())}); not a NetVLAD "
                                   "dataset specification", path=path)
            group = f["dbStruct"]
            return {key: _h5_value(f, group[key]) for key in group.keys()}
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:  # h5py's errors on a damaged file
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot read the v7.3 .mat file ({error}); re-download it", path=path) from None


def load_classic(path: Path) -> dict:
    """The ``dbStruct`` fields of a classic (v5/v7) .mat file."""
    try:
        mat = scipy.io.loadmat(path, simplify_cells=True)
    except (ValueError, TypeError, OSError, IndexError, KeyError, EOFError, AttributeError,
            scipy.io.matlab.MatReadError) as error:  # scipy's errors on a damaged or foreign file
        raise DatasetError(f"{path}: cannot read the .mat file ({type(error).__name__}: {error}); expected a "
                           "MATLAB dbStruct .mat, re-download it", path=path) from None
    if "dbStruct" not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path}: no dbStruct variable (found {found}); not a NetVLAD dataset specification")
    return dict(mat["dbStruct"])


def check_fields(path: Path, fields: dict) -> None:
    """Raise naming the missing (and probably misspelt) dbStruct fields."""
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        hints = [f"{k} (found {close[0]}?)" if (close := difflib.get_close_matches(k, fields, 1, 0.6)) else k
                 for k in missing]
        raise DatasetError(f"{path}: dbStruct lacks field(s) {', '.join(hints)}; fix or re-download the file")


def _names(path: Path, value, field: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(np.asarray(value, dtype=object).ravel())
    if not all(isinstance(v, str) for v in items):
        raise DatasetError(f"{path}: dbStruct.{field} must be a cell array of file names")
    return items


def _utm(path: Path, value, field: str, count: int) -> np.ndarray:
    utm = np.asarray(value, dtype=np.float64)
    if utm.size != 2 * count:
        raise DatasetError(f"{path}: dbStruct.{field} holds {utm.size} values for {count} images (need 2×{count})")
    return utm.reshape(2, count).T  # MATLAB stores 2×N (both loaders return MATLAB's shape)


def find_root(image_root: Path, names: list[str], named: str | None, candidates: tuple[str, ...]) -> Path:
    """The folder under ``image_root`` in which the first of ``names`` exists."""
    tried = [image_root / named] if named else [image_root / c for c in candidates]
    for root in tried:
        if (root / names[0]).is_file():
            return root
    raise DatasetError(f"{tried[0] / names[0]}: image not found (also tried {', '.join(map(str, tried[1:]))}); "
                       "give the image root (and the database/queries sub-folders)", path=tried[0] / names[0],
                       hint="--image-root, --database/--queries")


def image_list(path: Path, fields: dict, side: str, options: ReadOptions, skips: Skips,
               panoramas: bool = False) -> ImageList:
    """The database (``side="db"``) or query (``"q"``) list of a dbStruct; with ``panoramas`` (Tokyo 24/7's
    database) ``panoramas`` holds each image's panorama id, counted on the full list before any entry is skipped."""
    names = _names(path, fields[f"{side}ImageFns"], f"{side}ImageFns")
    utm = _utm(path, fields["utmDb" if side == "db" else "utmQ"], "utmDb" if side == "db" else "utmQ", len(names))
    count = fields.get("numImages" if side == "db" else "numQueries")
    if count is not None and int(np.asarray(count).ravel()[0]) != len(names):
        raise DatasetError(f"{path}: {'numImages' if side == 'db' else 'numQueries'} = {int(np.ravel(count)[0])} "
                           f"but {len(names)} file names; the file is inconsistent, re-download it")
    stamps = fields.get(f"{side}TimeStamp")
    times = None if stamps is None else np.asarray(stamps, dtype=np.float64).ravel()
    ids = np.arange(len(names)) // CUTOUTS_PER_PANORAMA if panoramas else None
    keep = np.isfinite(utm).all(axis=1)
    for i in np.flatnonzero(~keep):
        skips.bad(f"{path}: {side}ImageFns {names[i]}", "position is NaN", "fix utm in the .mat")
    image_root = options.image_root or path.parent
    named = options.database if side == "db" else options.queries
    candidates = DB_FOLDERS if side == "db" else QUERY_FOLDERS
    if panoramas:
        names = png_names(image_root, names, named, candidates)
    root = find_root(image_root, names, named, candidates)
    keep &= check_files(root, names, skips)
    idx = np.flatnonzero(keep)
    return ImageList(root, tuple(names[i] for i in idx), utm[idx], None, None if times is None else times[idx],
                     panoramas=None if ids is None else ids[idx])


@register_reader("mat", "Pittsburgh / Tokyo dbStruct .mat (classic or v7.3) with an image root", detect, 10)
def read(path: Path, options: ReadOptions) -> GeoDataset:
    """Load a dbStruct .mat file; thresholds go to ``info`` (``eval_radius``, ``train_radius`` in metres)."""
    fields = load_v73(path) if h5py.is_hdf5(path) else load_classic(path)
    check_fields(path, fields)
    which = fields.get("whichSet")
    if options.split and isinstance(which, str) and which and which != options.split:
        raise DatasetError(f"{path}: this file holds split {which!r}, not {options.split!r}; open the "
                           f"{options.split} .mat instead")
    skips = Skips(options.skip_bad)
    query_names = _names(path, fields["qImageFns"], "qImageFns")
    tokyo = is_tokyo247(path, query_names)
    db_count = len(_names(path, fields["dbImageFns"], "dbImageFns"))
    database = image_list(path, fields, "db", options, skips,
                          panoramas=tokyo and db_count % CUTOUTS_PER_PANORAMA == 0)
    queries = image_list(path, fields, "q", options, skips)
    info = {"format": "mat", "skipped": skips.entries, "split": which if isinstance(which, str) else None}
    if tokyo:
        info |= tokyo_info(path, db_count, query_names, queries.root, queries.names)
    if "posDistThr" in fields:
        info["eval_radius"] = float(np.ravel(fields["posDistThr"])[0])
    if "nonTrivPosDistSqThr" in fields:
        info["train_radius"] = float(np.sqrt(np.ravel(fields["nonTrivPosDistSqThr"])[0]))
    unknown = sorted(set(fields) - set(KNOWN))
    if unknown:
        logger.debug("%s: ignoring dbStruct fields %s", path, ", ".join(unknown))
    return GeoDataset(path.stem, database, queries, info=DatasetInfo(**info))

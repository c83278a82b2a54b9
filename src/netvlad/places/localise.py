"""Localisation against a geo-tagged database: a saved place index, top-k queries and position estimates.

An index folder holds ``index.json`` (model fingerprint, image root, UTM zone, index config and settings),
``model.safetensors`` (the model that described the database), ``index.faiss`` (approximate kinds only: an
exact index streams ``descriptors/`` from disk at query time), ``positions.npy``
``(N, 2)`` UTM metres, ``rows.npy`` (store rows held by the index) and ``descriptors/`` (a
:class:`DescriptorStore`, so an interrupted build continues).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from netvlad.data.dataset import ImageList
from netvlad.data.geo import utm_to_latlon
from netvlad.errors import BadInputError
from netvlad.extract.descriptors import extract_to_store
from netvlad.extract.engine import LIBRARY_ENGINE, Engine
from netvlad.extract.store import DescriptorStore
from netvlad.files import atomic_write, load_array, read_json
from netvlad.models import PlaceModel, load, save_model
from netvlad.places.positions import POSITION_ESTIMATORS
from netvlad.search.exact import exact_search
from netvlad.search.index import (
    EXACT,
    IndexConfig,
    build_index,
    check_index,
    configure,
    index_settings,
    read_index,
    search_rows,
    to_device,
    write_index,
)

logger = logging.getLogger(__name__)

FORMAT = "netvlad-index"


@dataclass(frozen=True)
class Match:
    """One retrieved database image: its name, descriptor L2 distance and UTM position (metres)."""

    name: str
    distance: float
    position: tuple[float, float]


@dataclass(frozen=True)
class QueryResult:
    """Top-k matches of one query image and its estimated UTM position (easting, northing metres).

    Examples:
        >>> result = QueryResult("q.jpg", (Match("db/17.jpg", 0.62, (584310.0, 4477120.0)),), (584310.0, 4477120.0),
        ...                      "top1", zone=(18, "T"))
        >>> [round(degrees, 4) for degrees in result.latlon()]
        [40.4405, -74.0059]
    """

    query: str
    matches: tuple[Match, ...]
    position: tuple[float, float]
    method: str
    zone: tuple[int, str] | None = None

    def latlon(self) -> tuple[float, float] | None:
        """(latitude, longitude) degrees of the estimate, when the UTM zone is known."""
        if self.zone is None:
            return None
        return tuple(float(v) for v in utm_to_latlon(np.asarray(self.position), self.zone)[0])

    def to_dict(self) -> dict:
        """Plain JSON-ready data; unknown positions (NaN) become None."""
        data = dataclasses.asdict(self)
        data["latlon"] = self.latlon()
        return _nan_to_none(data)


def _nan_to_none(value):
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


def position_kind(images) -> dict:
    """How an index's positions read: ``{"positions": "frames", "spacing": m}`` for a frame sequence (positions
    are frame × spacing metres), ``"utm"`` for GPS positions, ``"none"`` for a folder without them."""
    if images.frames is not None and len(images.frames) and np.any(images.frames > 0):
        first = int(np.flatnonzero(images.frames > 0)[0])
        return {"positions": "frames", "spacing": float(images.utm[first, 0] / images.frames[first])}
    return {"positions": "none" if np.isnan(images.utm).all() else "utm"}


class PlaceIndex:
    """A searchable, saved database: faiss index + names + positions + the model that made the descriptors.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> from netvlad.extract import extract_descriptors
        >>> from netvlad.models import ModelConfig
        >>> model = PlaceModel(ModelConfig(pool="gem", preprocessing={"resize": "none"})).eval()
        >>> _ = build_place_index(model, city.database, "index")
        >>> index = PlaceIndex.load("index")  # later, in another process
        >>> name = city.database.names[7]
        >>> [result] = index.localise([name], extract_descriptors(index.model, [city.database.root / name]), k=3)
        >>> result.matches[0].name == name, result.position == tuple(city.database.utm[7])
        (True, True)
    """

    def __init__(self, folder: Path, model: PlaceModel, index, store: DescriptorStore, rows: np.ndarray,
                 positions: np.ndarray, meta: dict) -> None:
        self.folder, self.model, self.index, self.store = folder, model, index, store
        self.rows, self.positions, self.meta = rows, positions, meta
        self.max_memory: float | None = None  # working-memory budget (bytes) of an exact search
        self.search_config = IndexConfig(kind=meta.get("index", {}).get("kind", "flat"))  # nprobe, rerank...

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def zone(self) -> tuple[int, str] | None:
        return tuple(self.meta["zone"]) if self.meta.get("zone") else None

    @classmethod
    def load(cls, folder: Path | str, search_config: IndexConfig | None = None,
             max_memory: float | None = None) -> PlaceIndex:
        """Open an index folder written by :func:`build_place_index`.

        ``search_config`` sets the search-time knobs (``nprobe``, ``ef_search``, ``rerank``, ``use_gpu``; its other
        fields are ignored); ``max_memory`` bytes bounds an exact search's working memory.
        """
        folder = Path(folder)
        meta_path = folder / "index.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder}: not a place index (no index.json); build one with `netvlad index "
                                    "build`")
        meta = read_json(meta_path, "place index description")
        if meta.get("format") != FORMAT:
            raise BadInputError(f"{meta_path}: not a netvlad place index", path=meta_path)
        store = DescriptorStore.open(folder / "descriptors")
        store.check_source(meta["fingerprint"], meta["dim"])
        rows = load_array(folder / "rows.npy", "index row table")
        positions = load_array(folder / "positions.npy", "index position table")
        if rows.ndim != 1 or positions.shape != (len(rows), 2):
            raise BadInputError(f"{folder}: rows.npy {rows.shape} and positions.npy {positions.shape} do not match; "
                                "rebuild the index", path=folder / "positions.npy")
        kind = meta.get("index", {}).get("kind", "flat")
        index = None
        if kind != "flat":
            knobs = search_config or IndexConfig(kind=kind)
            index = read_index(folder / "index.faiss")
            check_index(index, meta.get("settings") or {"kind": kind, "dim": meta["dim"], "count": meta["count"]},
                        folder / "index.faiss")
            index = to_device(configure(index, knobs), knobs.use_gpu)
        place = cls(folder, load(folder / "model.safetensors"), index, store, rows, positions, meta)
        place.max_memory = max_memory
        place.search_config = knobs if kind != "flat" else place.search_config
        return place

    def check_model(self, model: PlaceModel) -> None:
        """Refuse a model other than the one that described the database."""
        if model.fingerprint() != self.fingerprint:
            raise BadInputError(f"{self.folder} was built with model {self.fingerprint}, not "
                                f"{model.fingerprint()}; query with the same model (or the index's own)",
                                path=self.folder, hint="omit --model to use the index's own")

    def search(self, descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (clamped, with a warning) -> (L2 distances ``(Q, k)``, store rows ``(Q, k)``)."""
        if k > len(self):
            logger.warning("-k %d is larger than the database (%d images); using %d", k, len(self), len(self))
        k = min(k, len(self))
        if self.index is None:  # exact: stream the store's rows held by the index
            held = np.zeros(len(self.store), dtype=bool)
            held[self.rows] = True
            return exact_search(self.store.descriptors, descriptors, k, valid=held, max_memory=self.max_memory)
        return search_rows(self.index, descriptors, k, self.search_config, self.store.descriptors, self.rows,
                           verify=self.store.verify_rows)

    def localise(self, names: list[str], descriptors: np.ndarray, k: int = 5, method: str = "top1"
                 ) -> list[QueryResult]:
        """Matches and an estimated position for each query descriptor ``(Q, dim)``."""
        POSITION_ESTIMATORS.get(method)  # BadInputError naming the known methods
        distances, rows = self.search(descriptors, k)
        return self.results(names, distances, rows, method)

    def results(self, names: list[str], distances: np.ndarray, rows: np.ndarray, method: str = "top1"
                ) -> list[QueryResult]:
        """Matches and position estimates of store ``rows`` ``(Q, k)`` found at ``distances`` ``(Q, k)``."""
        results = []
        for name, dist, row in zip(names, distances, rows, strict=True):
            pos = self.positions[np.searchsorted(self.rows, row)]  # positions are held per index entry
            matches = tuple(Match(self.store.names[r], float(d), (float(p[0]), float(p[1])))
                            for r, d, p in zip(row, dist, pos, strict=True))
            estimate = POSITION_ESTIMATORS[method](pos, dist)
            results.append(QueryResult(name, matches, (float(estimate[0]), float(estimate[1])), method, self.zone))
        return results


def build_place_index(model: PlaceModel, images: ImageList, folder: Path | str, *,
                      index_config: IndexConfig = EXACT, dtype: str = "float32", skip_bad: bool = False,
                      batch_size: int = 8, workers: int = 0, device: torch.device | str = "cpu",
                      progress: bool = False, max_memory: float | None = None,
                      engine: Engine = LIBRARY_ENGINE) -> PlaceIndex:
    """Describe ``images`` with ``model`` and save a searchable index in ``folder`` (resumable); returns it.

    An approximate index is trained on a sample of the stored descriptors and filled in chunks (``max_memory``
    bytes); the exact one is the store itself, streamed at query time.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> from netvlad.models import ModelConfig
        >>> index = build_place_index(PlaceModel(ModelConfig(pool="gem")), city.database, "street")  # resumable
        >>> len(index), index.search(index.store.descriptors[[3]], k=1)[1]  # a database image finds itself
        (20, array([[3]]))
    """
    folder = Path(folder)
    store = extract_to_store(model, images.root, images.names, folder / "descriptors", dtype=dtype,
                             skip_bad=skip_bad, batch_size=batch_size, workers=workers, device=device,
                             progress=progress, desc="database", engine=engine)
    store.require_complete()
    rows = np.flatnonzero(store.valid())
    if len(rows) == 0:
        raise BadInputError(f"{images.root}: none of the {len(images)} images could be decoded (all skipped); "
                            "nothing to index", path=images.root)
    index = None if index_config.kind == "flat" else build_index(store.descriptors, index_config,
                                                                   valid=store.valid(), max_memory=max_memory)
    # the caller's model stays where it is: fingerprint and save_model read its tensors as CPU copies
    meta = {"format": FORMAT, "version": 1, "fingerprint": model.fingerprint(),
            "root": str(Path(images.root).expanduser().resolve()),  # absolute: found from any working directory
            "zone": list(images.zone) if images.zone else None, "dim": store.dim, "count": int(len(rows)),
            "index": dataclasses.asdict(index_config), "skipped": store.bad(),
            "settings": index_settings(index) if index is not None else {"kind": "flat", "dim": store.dim},
            **position_kind(images)}
    (folder / "index.json").unlink(missing_ok=True)  # a folder without index.json is an unfinished build
    save_model(model, folder / "model.safetensors")
    if index is not None:
        atomic_write(folder / "index.faiss", lambda tmp: write_index(index, tmp))
    else:
        (folder / "index.faiss").unlink(missing_ok=True)
    np.save(folder / "rows.npy", rows)
    np.save(folder / "positions.npy", images.utm[rows])
    atomic_write(folder / "index.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8"))
    logger.info("index of %d images (%d-D) written to %s", len(rows), store.dim, folder)
    place = PlaceIndex(folder, model, index, store, rows, images.utm[rows], meta)
    place.max_memory, place.search_config = max_memory, index_config
    return place

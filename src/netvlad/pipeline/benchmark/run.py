"""Run a benchmark suite: each dataset opened (or its city generated) and described once per model into stores
under the cache folder, the single-frame search made once, then every method row over the same descriptors.

Every cell is saved as it finishes (``OUT/cells/<dataset>/<row>.json``, written atomically, keyed by the settings
that made it), so an interrupted run continues where it stopped; a cell that fails holds its error, the rest of
the table runs, and the next run tries it again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netvlad.errors import BadInputError
from netvlad.files import atomic_write
from netvlad.pipeline.benchmark.suite import DatasetSpec, MethodSpec, Suite

logger = logging.getLogger(__name__)


@dataclass
class Cell:
    """One (row, dataset) result: ``recall`` {N: percent} and ``ms_per_query`` (the method alone, descriptors
    given), or ``note`` (why it does not apply) or ``error`` (why it failed)."""

    row: str
    family: str
    length: int
    mode: str
    dataset: str
    recall: dict[int, float] | None = None
    ms_per_query: float | None = field(default=None, repr=False)  # a measurement, not part of the result's identity
    queries: int | None = None
    note: str | None = None
    error: str | None = None
    stream: dict | None = None  # a stream column's cell: PR AUC and recall at 100 % precision of its scores

    def to_dict(self) -> dict:
        """The JSON form (recall keys as strings)."""
        out = dataclasses.asdict(self)
        out["recall"] = None if self.recall is None else {str(n): r for n, r in self.recall.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Cell:
        """The inverse of :meth:`to_dict`."""
        data = dict(data)
        data["recall"] = None if data["recall"] is None else {int(n): float(r) for n, r in data["recall"].items()}
        return cls(**data)

    def text(self, n: int = 1) -> str:
        """The cell as the table shows it: R@n, or its note, or its error."""
        if self.error is not None:
            return f"error: {self.error}"
        if self.note is not None:
            return self.note
        return f"{self.recall[n]:.1f}" if n in self.recall else "-"


@dataclass
class BenchmarkResult:
    """Every cell of a suite run, with the run's description (command, date, machine) in ``meta``."""

    suite: Suite
    cells: list[Cell]
    meta: dict = field(default_factory=dict, repr=False)

    def cell(self, row: str, dataset: str) -> Cell:
        """The cell of ``row`` on ``dataset``."""
        return next(c for c in self.cells if c.row == row and c.dataset == dataset)


def _alpha(model: dict) -> tuple[str, float]:
    """(α rule, α target ratio) of a suite model's settings (the defaults where it names none)."""
    from netvlad.extract.clusters import ClusterConfig

    return (model.get("alpha_rule", ClusterConfig.ratio_average),
            float(model.get("alpha_ratio", ClusterConfig.target_ratio)))


def model_name(suite: Suite, spec: DatasetSpec, family: MethodSpec) -> str:
    """The model a row describes ``spec`` with: the dataset's, or it with the row's α rule and target ratio where
    they differ from the model's own (``MODEL@RULE``, ``MODEL@RULExRATIO`` for a ratio other than the default)."""
    from netvlad.extract.clusters import ClusterConfig

    own_rule, own_ratio = _alpha(suite.models[spec.model])
    rule, ratio = family.alpha_rule or own_rule, family.alpha_ratio or own_ratio
    if (rule, ratio) == (own_rule, own_ratio):
        return spec.model
    return f"{spec.model}@{rule}" + ("" if ratio == ClusterConfig.target_ratio else f"x{ratio:g}")


def model_spec(suite: Suite, name: str) -> dict:
    """The settings of model ``name`` (:func:`model_name`: the suite's model, or it with another α rule or
    ratio)."""
    from netvlad.extract.clusters import ClusterConfig

    base, _, variant = name.partition("@")
    if not variant:
        return dict(suite.models[base])
    rule, _, ratio = variant.partition("x")
    return {**suite.models[base], "alpha_rule": rule,
            "alpha_ratio": float(ratio) if ratio else ClusterConfig.target_ratio}


def model_of(suite: Suite, name: str):
    """The suite's model ``name``: a checkpoint, or an off-the-shelf :class:`ModelConfig` (pretrained weights)."""
    from netvlad.models import ModelConfig, PlaceModel, load

    spec = model_spec(suite, name)
    if "checkpoint" in spec:
        path = Path(spec["checkpoint"]).expanduser()
        if not path.is_file():
            raise BadInputError(f"{path}: checkpoint of the suite's model {name!r} not found (relative paths start "
                                "in the current folder); train it, or drop the datasets that use it", path=path)
        return load(path).eval()
    return PlaceModel(ModelConfig.from_dict({k: v for k, v in spec.items()
                                             if k not in ("alpha_rule", "alpha_ratio")})).eval()


def open_spec(spec: DatasetSpec, data_root: Path, cache: Path):
    """The :class:`GeoDataset` of ``spec``: a folder under ``data_root`` or a city generated into ``cache``."""
    from netvlad.data import open_dataset

    if spec.city is not None:
        dataset = open_dataset(city_root(spec.city, spec.source, cache), split=spec.split or "test")
    else:
        root = data_root / spec.path
        if not root.exists():
            raise BadInputError(f"{root}: dataset {spec.name!r} not found; give --data the folder holding "
                                f"{spec.path}", path=root)
        dataset = open_dataset(root, database=spec.database, queries=spec.queries, split=spec.split,
                               frame_tolerance=spec.frame_tolerance)
    if spec.last_places:
        dataset = dataset.split_by_frames(spec.last_places)[1]
    return dataset


def city_root(city: dict, source: str, cache: Path) -> Path:
    """The folder of the city ``city`` (:class:`CityConfig` fields and ``size``), generated into
    ``cache/cities/<source>-<digest of its settings>`` the first time."""
    from netvlad.data.synthetic import CityConfig, generate_city

    options = {k: tuple(v) if isinstance(v, list) else v for k, v in city.items() if k != "size"}
    config = CityConfig.preset(city.get("size", "default"), **options)
    digest = hashlib.sha1(config.to_json().encode()).hexdigest()[:10]
    return generate_city(config, cache / "cities" / f"{source}-{digest}", workers=1)


def distractor_source(spec: DatasetSpec) -> str:
    """The name the distractor images of ``spec`` are kept under (shared by every set naming the same ones)."""
    return "distractors-" + hashlib.sha1(json.dumps(spec.distractors, sort_keys=True).encode()).hexdigest()[:10]


FAR = 1e7  # metres (and frames) between the distractors and every query: never within a radius or tolerance


def joined_database(database, extra):
    """The :class:`ImageList` ``database`` followed by ``extra`` (another folder's images, named by absolute path,
    each of its sequences a sequence of its own), ``extra`` moved :data:`FAR` away in position and frame number so
    no query's ground truth can reach it."""
    from netvlad.data.dataset import ImageList
    from netvlad.data.sequences import SequenceOrder

    names = database.names + tuple(str(p.resolve()) for p in extra.paths())
    utm = np.concatenate([database.utm, extra.utm + FAR])
    frames = None
    if database.frames is not None:
        frames = np.concatenate([database.frames, -int(FAR) - np.arange(len(extra))])
    sequence = None
    if database.sequence is not None and extra.sequence is not None:
        own = database.sequence
        sequence = SequenceOrder(np.concatenate([own.ids, extra.sequence.ids + len(own.names)]),
                                 np.concatenate([own.frames, extra.sequence.frames]),
                                 own.names + tuple(f"distractors/{n}" for n in extra.sequence.names))
    return ImageList(database.root, names, utm, database.zone, frames=frames, sequence=sequence)


def with_distractors(suite: Suite, spec: DatasetSpec, dataset, db: np.ndarray, model, cache: Path, name: str):
    """(dataset, database descriptors) with ``spec.distractors``' database images (described by ``model`` into
    ``cache/<distractor source>/<name>``) after the set's own: the same queries and ground truth, a larger map."""
    import dataclasses as dc

    from netvlad.data import open_dataset
    from netvlad.eval.recall import describe

    if spec.distractors is None:
        return dataset, db
    source = distractor_source(spec)
    other = open_dataset(city_root(spec.distractors["city"], source, cache), split=spec.distractors.get("split",
                                                                                                       "test"))
    store = cache / source / name
    _drop_other_model(store, model.fingerprint(), name)
    extra, _, _ = describe(model, other.database, store / "database", desc="distractors")
    joined = dc.replace(dataset, database=joined_database(dataset.database, other.database))
    logger.info("%s: %d distractor images of %s join the map of %d", spec.name, len(other.database), source, len(db))
    return joined, np.concatenate([db, np.asarray(extra, np.float32)])


def only_condition(spec: DatasetSpec, dataset, queries: np.ndarray):
    """(dataset, query descriptors) keeping only the queries taken in ``spec.condition`` (all without one)."""
    from netvlad.data.conditions import query_conditions

    if spec.condition is None:
        return dataset, queries
    conditions = query_conditions(dataset)
    if conditions is None:
        raise BadInputError(f"dataset {spec.name!r}: its queries name no condition; remove condition: "
                            f"{spec.condition}")
    keep = np.flatnonzero(np.asarray(conditions) == spec.condition)
    if not len(keep):
        raise BadInputError(f"dataset {spec.name!r}: no query taken in condition {spec.condition!r}; known: "
                            f"{', '.join(sorted(set(conditions)))}")
    return dataset.subset(query_indices=keep), queries[keep]


def describe_spec(suite: Suite, spec: DatasetSpec, dataset, cache: Path,
                  model: str | None = None) -> tuple[np.ndarray, np.ndarray, object, Path]:
    """(database, queries, model, store folder): descriptors of ``dataset`` by ``model`` (default: the spec's), kept
    in (and resumed from) stores under ``cache/<dataset>/<model>``; returned in memory (float32). Off-the-shelf
    NetVLAD is first k-means initialised on the database images with the model's α rule (the suite's seed; cached
    in ``cache/clusters``), as ``netvlad evaluate`` does."""
    from netvlad.eval.recall import describe
    from netvlad.extract.clusters import ClusterConfig, cluster_if_off_the_shelf

    name = model or spec.model
    net = model_of(suite, name)
    rule, ratio = _alpha(model_spec(suite, name))
    cluster_if_off_the_shelf(net, dataset.database.paths(),
                             ClusterConfig(seed=suite.seed, ratio_average=rule, target_ratio=ratio),
                             cache=cache / "clusters")
    model = net
    store = cache / spec.source / name
    _drop_other_model(store, model.fingerprint(), name)
    db, _, _ = describe(model, dataset.database, store / "database", desc="database")
    q, _, _ = describe(model, dataset.queries, store / "queries", desc="queries")
    return np.asarray(db, np.float32), np.asarray(q, np.float32), model, store


def _drop_other_model(store: Path, fingerprint: str, name: str) -> None:
    """Delete this cache's descriptors and patches of model ``name`` when another model wrote them: a checkpoint
    retrained at the same path (its fingerprint is a SHA-256 of its tensors) is described again, with a logged line.
    A store the user names (``netvlad extract --out``, ``seqnet --store``) is never dropped: it is refused."""
    from netvlad.extract.store import stored_fingerprint

    stale = {stored_fingerprint(store / part) for part in ("database", "queries")} - {None, fingerprint}
    if stale:
        logger.warning("%s: descriptors of model %s, but %r is now %s (its checkpoint changed): extracting again",
                       store, ", ".join(sorted(stale)), name, fingerprint)
        shutil.rmtree(store)


def checkpoint_digest(path: Path) -> str | None:
    """SHA-256 of the checkpoint file at ``path`` (``None`` where there is none), computed once per size and
    modification time."""
    if not path.is_file():
        return None
    stat = path.stat()
    return _file_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cell_key(suite: Suite, spec: DatasetSpec, family: MethodSpec, length: int, mode: str,
             stream: bool = False) -> str:
    """What a cell's value depends on, hashed: the dataset, its model (a checkpoint's content too), the
    family's settings, L, mode, Recall@N; a stream column's cell also its frames left out."""
    model = model_spec(suite, model_name(suite, spec, family))
    if "checkpoint" in model:  # a checkpoint retrained at the same path is another model: keyed by its content
        model["file"] = checkpoint_digest(Path(model["checkpoint"]).expanduser())
    text = json.dumps([spec.key(), model, family.method, family.options, length, mode, list(suite.recall)]
                      + ([family.verify] if family.verify else [])
                      + ([{"stream": STREAM_REPLAY, "exclude_recent": suite.stream}] if stream else []),
                      sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


STREAM_REPLAY = 2  # the stream replay's version: a change to what it measures makes saved stream cells stale


def _cell_path(out: Path, dataset: str, row: str) -> Path:
    return out / "cells" / dataset.replace(" ", "_") / (row.replace(" ", "_").replace("=", "") + ".json")


def _saved(path: Path, key: str) -> Cell | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("key") != key:
        return None
    cell = Cell.from_dict(data["cell"])
    return None if cell.error is not None else cell  # a failed cell runs again (its cause may be fixed)


def _save(path: Path, key: str, cell: Cell) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"key": key, "cell": cell.to_dict()}), "utf-8"))


def compute_cell(cell: Cell, family: MethodSpec, dataset, db: np.ndarray, q: np.ndarray, single, ns,
                 model=None, store: Path | None = None, radius: float = 25.0, reranked=None) -> Cell:
    """Fill ``cell`` with the row's Recall@N and time per query, or the reason it does not apply. A re-ranking row
    (``family.verify``) needs the ``model`` and its ``store`` folder (database patches are kept under it), or
    ``reranked``: a :class:`VerifyPass` of the same preset over at least the row's top, whose raw patch scores
    are fused again with the row's λ and top (no patch is extracted or matched again)."""
    from netvlad.eval.sequence import sequence_ranking

    cell.queries = len(q)
    if family.verify is not None:
        top = min(family.verify["top"], single.ranked.shape[1])
        if reranked is None:
            from netvlad.match.verify.run import patch_extractor

            extractor = patch_extractor(model, family.preset(), dataset.database.paths())
            reranked = verify_pass(dataset, single, top, ns, extractor, store, radius)
        cell.recall, cell.ms_per_query = rescored_recall(reranked, family, dataset, top, ns, radius)
        return cell
    if family.method == "single":
        cell.recall = {n: round(float(single.recall[n]), 4) for n in ns}
        return cell
    cell.note = order_note(dataset, cell.length)
    if cell.note:
        return cell
    config = family.config(cell.length, cell.mode)
    start = time.perf_counter()
    result = sequence_ranking(family.method, db, q, dataset, single, config, ns)
    cell.ms_per_query = round(1000 * (time.perf_counter() - start) / len(q), 4)
    cell.recall = {n: round(float(result.recall[n]), 4) for n in ns}
    return cell


def order_note(dataset, length: int) -> str | None:
    """Why a sequence row of window ``length`` cannot run on ``dataset``: no frame order, or a query route shorter
    than the window; None where it can."""
    if dataset.queries.sequence is None or dataset.database.sequence is None:
        return "n/a (no order)"
    longest = max(len(m) for m in dataset.queries.sequence.members())
    return f"n/a (L > {longest})" if length > longest else None


def compute_stream_cell(cell: Cell, family: MethodSpec, dataset, db: np.ndarray, q: np.ndarray, own: int,
                        radius: float, exclude_recent: int) -> Cell:
    """Fill a stream column's ``cell``: the row's sequence top-1 when the set is replayed as ``netvlad stream``
    sees it (:mod:`netvlad.pipeline.benchmark.stream_column`; ``own`` database rows are the set's, the rest
    distractors) with the PR AUC and recall at 100 % precision of its scores, ms per streamed frame; or the reason
    it does not apply."""
    from netvlad.match.sequence import METHODS, STREAM_SCORES
    from netvlad.pipeline.benchmark.stream_column import replay

    cell.queries = len(q)
    if family.method == "single" or family.verify is not None:
        cell.note = "n/a (single frame)"
        return cell
    if family.method not in STREAM_SCORES.names():
        cell.note = "n/a (offline)" if METHODS.get(family.method).offline else "n/a (no stream score)"
        return cell
    if cell.mode != "causal":
        cell.note = "n/a (centred)"
        return cell
    cell.note = order_note(dataset, cell.length)
    if cell.note:
        return cell
    start = time.perf_counter()
    result = replay(family.method, family.config(cell.length, cell.mode), db, q, dataset, radius, own,
                    exclude_recent)
    cell.ms_per_query = round(1000 * (time.perf_counter() - start) / (own + len(q)), 4)
    cell.recall = {1: round(result.recall, 4)}
    cell.stream = {k: round(float(v), 4) for k, v in result.pr().items()}
    return cell


@dataclass(frozen=True)
class VerifyPass:
    """One re-ranking pass of a dataset's single-frame shortlist with a preset: the shortlist ``ranked`` /
    ``distances`` ``(Q, top)``, the raw patch scores ``raw`` ``(Q, top, S)``, seconds per query for the query's own
    patches (``extract_seconds``) and for matching its ``top`` candidates (``seconds``)."""

    ranked: np.ndarray
    distances: np.ndarray
    raw: np.ndarray
    seconds: np.ndarray
    extract_seconds: np.ndarray

    @property
    def top(self) -> int:
        """Candidates per query."""
        return self.ranked.shape[1]


def verify_pass(dataset, single, top: int, ns, extractor, store: Path, radius: float = 25.0) -> VerifyPass:
    """Re-rank each query's single-frame top ``top`` with ``extractor`` (a
    :class:`~netvlad.match.verify.patches.PatchExtractor` of the row's preset; database patches under ``store``),
    keeping the raw patch scores every λ and shorter top reuse."""
    from netvlad.eval.verified import verify_given

    ranked, distances = single.ranked[:, :top], single.distances[:, :top]
    verified = verify_given(extractor, dataset, dataset.positives(radius), store, ranked, distances, ns)
    ranking = verified.ranking
    return VerifyPass(ranked, distances, ranking.raw, ranking.seconds, ranking.extract_seconds)


def rescored_recall(shared: VerifyPass, family: MethodSpec, dataset, top: int, ns, radius: float = 25.0
                    ) -> tuple[dict[int, float], float]:
    """({N: Recall@N}, ms per query) of a re-ranking row from a :func:`verify_pass` over at least ``top``
    candidates: its raw patch scores fused with the row's λ over its top. The time is the pass's query patches,
    its matching scaled to ``top`` candidates (matching is linear in them) and the fusion."""
    from netvlad.eval.recall import recall_at_n
    from netvlad.match.verify.run import rescore_ranking

    start = time.perf_counter()
    ranked, _ = rescore_ranking(shared.raw, shared.ranked, shared.distances, family.preset(), top)
    fusion = time.perf_counter() - start
    recall = recall_at_n(ranked, dataset.positives(radius), [n for n in ns if n <= top] or [top])
    seconds = float(np.sum(shared.extract_seconds) + np.sum(shared.seconds) * top / shared.top) + fusion
    return ({n: round(float(recall[n]), 4) for n in ns if n in recall}, round(1000 * seconds / len(ranked), 4))


def run_benchmark(suite: Suite, out: Path | str, data_root: Path | str, cache: Path | str) -> BenchmarkResult:
    """Every (row, dataset) cell of ``suite``; see the module docstring. ``data_root``: the folder holding the
    suite's dataset paths; ``cache``: stores and generated cities (reused by later runs)."""
    from netvlad.eval.recall import evaluate_descriptors
    from netvlad.match.sequence import DEFAULT

    out, data_root, cache = Path(out), Path(data_root), Path(cache)
    ns = suite.recall
    depth = max([max(ns)] + [int(m.options.get("shortlist", DEFAULT.shortlist)) for m in suite.methods]
                + [m.verify["top"] for m in suite.methods if m.verify])
    longest: dict = {}  # preset -> the longest top of its rows: one pass per (dataset, preset) serves every row
    for family in suite.methods:
        if family.verify is not None:
            preset = family.verify["preset"]
            longest[preset] = max(longest.get(preset, 0), family.verify["top"])
    cells = []
    for spec in suite.datasets:
        columns = [(column, stream) for column, other, stream in suite.columns() if other is spec]
        todo = []
        for column, stream in columns:
            for family, label, n, mode in suite.rows():
                key = cell_key(suite, spec, family, n, mode, stream)
                cell = _saved(_cell_path(out, column, label), key)
                todo.append((family, label, n, mode, column, stream, key, cell))
        if all(item[-1] is not None for item in todo):
            cells += [item[-1] for item in todo]
            logger.info("%s: every cell saved, reused", spec.name)
            continue
        try:
            opened = open_spec(spec, data_root, cache)
        except Exception as error:  # the dataset's failure fills its column; the other datasets run
            logger.error("%s: %s", spec.name, error)
            cells += [Cell(label, family.name, n, mode, column, error=_one_line(error))
                      for family, label, n, mode, column, _, _, _ in todo]
            continue
        described: dict = {}  # model name -> (dataset, db, q, single search), each model described once
        passes: dict = {}  # (model name, preset) -> its re-ranking over the longest top any row of it asks for

        def searched(name: str, spec=spec, opened=opened, described=described):
            if name not in described:
                db, q, model, store = describe_spec(suite, spec, opened, cache, name)
                dataset, q = only_condition(spec, opened, q)
                dataset, db = with_distractors(suite, spec, dataset, db, model, cache, name)
                single = evaluate_descriptors(db, q, dataset.positives(spec.radius), ns, k=min(depth, len(db)))
                described[name] = (dataset, db, q, single, model, store)
            return described[name]

        for family, label, n, mode, column, stream, key, saved in todo:
            if saved is not None:
                cells.append(saved)
                continue
            cell = Cell(label, family.name, n, mode, column)
            if stream:
                try:
                    dataset, db, q, _, _, _ = searched(model_name(suite, spec, family))
                    compute_stream_cell(cell, family, dataset, db, q, len(opened.database), spec.radius,
                                        suite.stream)
                except Exception as error:  # as an offline cell: its error in the cell, the run goes on
                    logger.error("%s / %s: %s", column, label, error)
                    cell.error = _one_line(error)
                _save(_cell_path(out, column, label), key, cell)
                logger.info("%s / %s: %s", column, label, cell.text())
                cells.append(cell)
                continue
            if family.verify is not None and spec.distractors is not None:  # patches of the set's own map only
                cell.note = "n/a (re-ranking with distractors)"
                cells.append(cell)
                continue
            try:
                name = model_name(suite, spec, family)
                dataset, db, q, single, model, store = searched(name)
                reranked = None
                if family.verify is not None:
                    shared = (name, family.verify["preset"])
                    if shared not in passes:
                        from netvlad.match.verify.run import patch_extractor

                        top = min(longest[family.verify["preset"]], single.ranked.shape[1])
                        extractor = patch_extractor(model, family.preset(), dataset.database.paths(),
                                                    cache / "clusters")
                        passes[shared] = verify_pass(dataset, single, top, ns, extractor, store, spec.radius)
                    reranked = passes[shared]
                compute_cell(cell, family, dataset, db, q, single, ns, model, store, spec.radius, reranked)
            except Exception as error:  # one failing cell (or its model): its error in the cell, the run goes on
                logger.error("%s / %s: %s", spec.name, label, error)
                cell.error = _one_line(error)
            _save(_cell_path(out, spec.name, label), key, cell)
            logger.info("%s / %s: %s", spec.name, label, cell.text())
            cells.append(cell)
    return BenchmarkResult(suite, cells)


def default_cache() -> Path:
    """The benchmark's stores and cities: ``$NETVLAD_CACHE/benchmark``, else ``netvlad-cache/benchmark`` in the
    temp folder."""
    return Path(os.environ.get("NETVLAD_CACHE", Path(tempfile.gettempdir()) / "netvlad-cache")) / "benchmark"


def run_suite(suite: Suite | str | Path, out: Path | str, data_root: Path | str, cache: Path | str | None = None,
              command: str = "netvlad benchmark") -> BenchmarkResult:
    """Load ``suite`` (a shipped name or a YAML file), seed torch with its seed and run every cell into ``out``
    (``cache``: :func:`default_cache` when None); ``result.meta`` names ``command``, the machine, threads and seed."""
    import torch

    from netvlad.pipeline.benchmark.report import run_meta
    from netvlad.pipeline.benchmark.suite import load_suite

    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    torch.manual_seed(suite.seed)
    result = run_benchmark(suite, out, data_root, default_cache() if cache is None else cache)
    result.meta = run_meta(command, torch.get_num_threads(), suite.seed)
    return result


def _one_line(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

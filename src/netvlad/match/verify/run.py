"""Spatial verification of whole rankings: a patch extractor for a model and preset, database patches in a store,
each query's shortlist re-ranked from its own patches."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from netvlad.data.images import ImageDataset
from netvlad.data.prefetch import ordered_map, prefetch
from netvlad.errors import BadInputError
from netvlad.extract.cluster_cache import cluster_cache_folder
from netvlad.extract.descriptors import PREFETCH_BATCHES, in_lanes
from netvlad.extract.engine import LIBRARY_ENGINE, Engine, Runner, local_runner
from netvlad.extract.row_buffer import RowBuffer
from netvlad.extract.store import DescriptorStore
from netvlad.match.verify import patches
from netvlad.match.verify.patch_store import (
    KEYS,
    PatchStore,
    create_patch_store,
    describe_identity,
    extract_patch_store,
)
from netvlad.match.verify.patches import (
    Patches,
    PatchExtractor,
    fit_patch_whitening,
    iter_images,
    require_netvlad,
)
from netvlad.match.verify.presets import VerifyPreset
from netvlad.match.verify.rerank import fused_order, shortlist_scores
from netvlad.match.verify.whitening_cache import read_whitening, whitening_key, write_whitening
from netvlad.models import PlaceModel
from netvlad.nn import PCAWhitening
from netvlad.threads import torch_threads, usable_cores

logger = logging.getLogger(__name__)

T = TypeVar("T")
FIT_IMAGES = 100  # database images a patch whitening is fitted on when the model has none
# batches whose patches wait for, or are in, the projection thread while the backbone runs on the next ones
PIPELINE_BATCHES = 2


@dataclass
class VerifiedRanking:
    """Re-ranked rankings: ``ranked`` ``(Q, top)`` database rows best first (−1: none), ``scores`` ``(Q, top)``
    fused scores, ``skipped`` (image, size) pairs without windows, ``seconds`` ``(Q,)`` re-ranking time per query
    (reading, matching, scoring; the query's own patches excluded), ``bytes_per_image`` of the patch store,
    ``extract_seconds`` ``(Q,)`` the query's own patches, ``raw`` ``(Q, top, S)`` the raw patch scores per patch size
    in the order of the ranking given (:func:`rescore_ranking` fuses them again with another λ or a shorter top).

    Examples:
        >>> verified = VerifiedRanking(np.array([[1, 0]]), np.array([[1.0, 0.0]]), skipped=0, seconds=np.array([0.02]),
        ...                            bytes_per_image=3140)  # as :func:`verify_ranking` returns it
        >>> verified.ranked[:, 0], verified.extract_seconds
        (array([1]), array([], dtype=float64))
    """

    ranked: np.ndarray
    scores: np.ndarray
    skipped: int
    seconds: np.ndarray
    bytes_per_image: int
    extract_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    raw: np.ndarray | None = field(default=None, repr=False)


def patch_whitening(model: PlaceModel, preset: VerifyPreset, fit_paths: Sequence[Path | str],
                    cache: Path | str | bool = True, device: str | torch.device = "cpu") -> PCAWhitening:
    """The model's own whitening, or one fitted on patches of ``fit_paths`` — once: kept in the cache (``cache``:
    True for the k-means cache folder, :func:`~netvlad.extract.cluster_cache.cluster_cache_folder`, a folder, or
    False for none; see :mod:`netvlad.match.verify.whitening_cache`) and read back by every later call with the same
    model, preset and images.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.models import ModelConfig
        >>> street_views = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city")).database
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()  # no whitening
        >>> toy = VerifyPreset("toy", "1 × 1 patches, 16-D", sizes=(1,), dim=16, scorer="rapid")
        >>> whitening = patch_whitening(model, toy, street_views.paths(), cache=Path("cache"))  # fitted, then kept
        >>> again = patch_whitening(model, toy, street_views.paths(), cache=Path("cache"))  # read from the cache
        >>> whitening.out_dim, torch.equal(whitening.linear.weight, again.linear.weight)
        (16, True)
    """
    layer = require_netvlad(model)
    if model.whitening is not None:
        return model.whitening
    paths = list(fit_paths)[:: max(1, len(fit_paths) // FIT_IMAGES)][:FIT_IMAGES]
    fit = {"dim": preset.dim, "size": sorted(preset.sizes)[len(preset.sizes) // 2], "stride": preset.stride,
           "samples": max(preset.dim + 1000, patches.FIT_SAMPLES), "seed": 0, "shrink": patches.SHRINK,
           "candidates": len(fit_paths)}
    folder, key = None, None
    if cache is not False:
        folder = cluster_cache_folder() if cache is True else Path(cache)
        try:
            key = whitening_key(model, paths, fit)
        except OSError:  # an unreadable image: the fit reports it, nothing is cached
            folder = None
    if folder is not None:
        whitening = read_whitening(folder, key, layer.output_dim, preset.dim)
        if whitening is not None:
            logger.info("patch whitening read from the cache %s", folder)
            return whitening
    whitening = fit_patch_whitening(model, paths, preset.dim, size=fit["size"], stride=preset.stride,
                                    samples=fit["samples"], seed=fit["seed"], device=device, shrink=fit["shrink"])
    if folder is not None:
        try:
            logger.info("patch whitening cached in %s for the next run", write_whitening(folder, key, whitening))
        except OSError as error:
            logger.warning("patch whitening not cached (%s); the next run fits it again", error)
    return whitening


def patch_extractor(model: PlaceModel, preset: VerifyPreset, fit_paths: Sequence[Path | str],
                    cache: Path | str | bool = True, device: str | torch.device = "cpu") -> PatchExtractor:
    """A :class:`PatchExtractor` of ``preset`` on ``device`` with the whitening :func:`patch_whitening` gives
    (``fit_paths``: database images, ``cache`` as it takes it): what every re-ranking function below takes.

    Examples:
        >>> from netvlad.models import ModelConfig
        >>> model = PlaceModel(ModelConfig(num_clusters=4), pretrained=False).eval()
        >>> model.set_whitening(PCAWhitening(4 * 1280, 32))  # the model's own whitening: no image is read
        >>> toy = VerifyPreset("toy", "2 × 2 patches, 16-D", sizes=(2,), dim=16, scorer="rapid")
        >>> extractor = patch_extractor(model, toy, fit_paths=[])
        >>> extractor.preset.name, extractor.dim  # the whitening cropped to the preset's 16 dims
        ('toy', 16)
    """
    whitening = patch_whitening(model, preset, fit_paths, cache, device)
    return PatchExtractor(model.to(device).eval(), preset, whitening)


def clamp_top(top: int, num_database: int) -> int:
    """``top`` clamped to the database size, with a warning when it was larger."""
    if top > num_database:
        logger.warning("verify top %d is larger than the database: clamped to the database's %d images", top,
                       num_database)
    return max(1, min(top, num_database))


def extract_with_patches(extractor: PatchExtractor, root: Path | str, names: Sequence[str], store_folder: Path | str,
                         patch_folder: Path | str, dtype: str = "float32", batch_size: int = 8,
                         patch_dtype: str = "float16", ahead: int = PIPELINE_BATCHES, engine: Engine = LIBRARY_ENGINE
                         ) -> PatchStore | None:
    """Global descriptors of ``root/names`` into the descriptor store at ``store_folder`` (the one
    :func:`~netvlad.extract.descriptors.extract_to_store` makes, which then finds it complete) and their patches into
    the patch store at ``patch_folder``, from one pass of the backbone per image on a CPU: one graph returns the
    descriptors and the last feature maps together (:func:`~netvlad.extract.engine.local_runner`: where ``engine``
    resolves to onnxruntime, its export with the feature maps, the descriptors the bits of the same engine's plain
    extraction; else torch's folded, traced graph). Rows already in either store are kept -> the patch store (None:
    no image decoded). ``dtype``: the descriptor store's; ``patch_dtype``: the patch store's (float32: as computed).

    Three stages overlap: the images are decoded and resized ahead by a thread
    (:func:`~netvlad.data.prefetch.prefetch`) and the calling thread runs the backbone on them (an onnxruntime
    runner with lanes: that many threads each decode an image and run it through a one-thread session, as the global
    extraction does; with ``ahead`` 0 the calling thread runs a lane's session, the bytes the same), the calling
    thread writes both stores batch after batch in the images' order, and helper threads (with lanes: one a core,
    torch on one thread during the pass, also with ``ahead`` 0; else as many as the cores hold torch's thread count;
    at most ``ahead``; :func:`~netvlad.data.prefetch.ordered_map`) project the patches of up to ``ahead`` batches
    behind it (``ahead`` 0: all in the calling thread, one step after the other; the stores' bytes are the same);
    the descriptor rows go through a :class:`~netvlad.extract.row_buffer.RowBuffer`. A failure (an undecodable
    image, a store that cannot take a row) is raised after the rows of every batch before it are written; no later
    batch is written, and batches projected but not yet written stay pending for the next run.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.extract import extract_descriptors
        >>> from netvlad.match.verify import VerifyPreset
        >>> from netvlad.models import ModelConfig
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> preset = VerifyPreset("toy", "2 × 2 patches, 32-D", sizes=(2,), dim=32, scorer="rapid")
        >>> extractor = PatchExtractor(model, preset, whitening=PCAWhitening(4 * 1280, 32))
        >>> views = city.database
        >>> store = extract_with_patches(extractor, views.root, views.names, "one-pass/database", "one-pass/toy")
        >>> rows = DescriptorStore.open("one-pass/database").load()  # the global descriptors of the same pass
        >>> store.stores[0].complete, bool(np.abs(rows - extract_descriptors(model, views.paths())).max() < 1e-5)
        (True, True)
    """
    model = extractor.model
    paths = [Path(root) / n for n in names]
    rows = DescriptorStore.create(store_folder, names, model.output_dim, dtype, model.fingerprint(),
                                  str(Path(root).expanduser().resolve()))
    store = PatchStore.open(patch_folder) if (Path(patch_folder) / "patches.json").is_file() else None
    todo = np.union1d(rows.pending(), np.arange(len(names)) if store is None else store.stores[-1].pending())
    if not len(todo):
        return store
    logger.info("%s and %s: %d of %d images, descriptors and patches from one backbone pass", store_folder,
                patch_folder, len(todo), len(names))
    run = local_runner(model, engine, images=len(todo))
    # which of the images to do lack their descriptor row, their patches (all of them while no patch store exists)
    wants_row = np.isin(todo, rows.pending())
    wants_patches = np.ones(len(todo), bool) if store is None else np.isin(todo, store.stores[-1].pending())

    spare, local = [extractor], threading.local()  # a helper thread's own extractor: its own projection buffer

    def project(item: tuple[np.ndarray, np.ndarray, np.ndarray] | Exception) -> Callable[[], None]:
        """A batch's (indices, descriptors, feature maps) -> the call writing its patches and descriptors; the
        failure of the images after the last batch, raised at its place in the order."""
        if isinstance(item, Exception):
            raise item
        indices, descriptors, maps = item
        if not hasattr(local, "extractor"):
            local.extractor = spare.pop() if spare else extractor.twin()
        found = local.extractor.from_features(torch.from_numpy(maps))

        def write() -> None:
            nonlocal store
            if store is None:  # the first image's windows size the rows
                store = create_patch_store(extractor, names, patch_folder, found[0].grids, patch_dtype)
            keep, fresh = wants_patches[indices], wants_row[indices]
            if keep.any():
                store.write(todo[indices][keep], [p for p, k in zip(found, keep, strict=True) if k])
            if fresh.any():
                held.add(todo[indices][fresh], descriptors[fresh])
        return write

    ordered = [paths[i] for i in todo]
    if ahead and run.lanes > 1:  # each image decoded and run by one of the lanes' one-thread sessions
        passes = source = _passes_in_lanes(run, model, ordered, batch_size, max(ahead * batch_size, run.lanes))
    else:  # decoded ahead by a thread, the backbone in the calling thread (a lane's session: the lanes' bytes)
        one = run.lane() if run.lanes > 1 else run
        source = prefetch(iter_images(model, ordered, batch_size), PREFETCH_BATCHES if ahead else 0)
        passes = ((indices, *one(batch)) for indices, batch in source)
    # beside one-thread lanes, one-thread projections, one a core (a product split over threads waits for its
    # slowest one while the lanes hold the cores), also with nothing ahead (the same products: the stores' bytes do
    # not depend on ``ahead``); else as many as the cores hold torch's threads beside the backbone (torch's: the
    # backbone's own where it is torch's), up to the batches behind
    threads = 1 if run.lanes > 1 else torch.get_num_threads()
    helpers = max(1, min(ahead, usable_cores() // threads))
    writes = (ordered_map(project, _failure_last(passes), helpers, ahead) if ahead
              else (project(item) for item in _failure_last(passes)))
    # the descriptor rows written about once a second on a helper thread, as the global extraction writes them
    with (torch_threads(threads), RowBuffer(rows, background=True) as held, contextlib.closing(source),
          contextlib.closing(writes) as in_order):
        for write in in_order:
            write()
    return store


def _failure_last(items: Iterator[T]) -> Iterator[T | Exception]:
    """``items``, then the exception that ended them (an undecodable image) as an item of its own, so that the
    batches before it are projected and written before it is raised."""
    try:
        yield from items
    except Exception as error:  # noqa: BLE001 - raised again at its place, after the batches before it
        yield error


def _passes_in_lanes(run: Runner, model: PlaceModel, paths: Sequence[Path], batch_size: int, ahead: int
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(indices, descriptors, feature maps) per ``batch_size`` images and image size, as :func:`iter_images`'
    batches through ``run`` give them, each image decoded and run by one of ``run.lanes`` threads through
    ``run.lane()`` (:func:`~netvlad.extract.descriptors.in_lanes`), at most ``ahead`` images ahead of the caller;
    an undecodable image raises at its place."""
    pre = model.config.preprocessing
    dataset = ImageDataset(paths, pre.resize, pre.size, fast_decode=pre.fast_decode)
    for groups, _ in in_lanes(run, dataset, batch_size, ahead):  # nothing undecodable: the dataset raises
        for indices, (descriptors, maps) in groups:
            yield indices, descriptors, maps


def verify_ranking(extractor: PatchExtractor, store: PatchStore, query_paths: Sequence[Path | str],
                   ranked: np.ndarray, distances: np.ndarray, top: int, device: str | torch.device = "cpu",
                   seed: int = 0, query_patches: PatchStore | None = None, lanes: int | None = None
                   ) -> VerifiedRanking:
    """Re-rank each query's global top-``top`` (``ranked``/``distances`` ``(Q, k)``) by patch matching.

    ``query_patches``: a complete patch store of the queries, in ``query_paths`` order, written with the database's
    model, preset and whitening (:func:`extract_with_patches`): their patches are read from it, not extracted.

    ``lanes``: threads matching queries at once (None: :func:`match_lanes`, one a core beside torch's threads with
    the ``rapid`` scorer, whose scores depend on the query and its candidates alone; ``ransac`` draws its
    hypotheses from one generator, query after query, so it matches in one). The results are the same with any
    number; ``seconds`` is each query's own time in its lane. Fewer than one lane, or more with ``ransac``: a
    ValueError.

    Examples:
        >>> import tempfile
        >>> from PIL import Image
        >>> from netvlad.match.verify import PatchExtractor, VerifyPreset, extract_patch_store
        >>> from netvlad.models import ModelConfig, PlaceModel
        >>> from netvlad.nn import PCAWhitening
        >>> folder = tempfile.TemporaryDirectory()
        >>> root = Path(folder.name)
        >>> rng = np.random.default_rng(0)
        >>> scene = rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)
        >>> Image.fromarray(scene[:, :256]).save(root / "query.png")
        >>> Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(root / "elsewhere.png")
        >>> Image.fromarray(scene[:, 64:]).save(root / "same.png")  # the query's place, seen from the right
        >>> _ = torch.manual_seed(0)
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> preset = VerifyPreset("toy", "2 × 2 patches, 32-D", sizes=(2,), dim=32, scorer="ransac", global_weight=0)
        >>> extractor = PatchExtractor(model, preset, whitening=PCAWhitening(4 * 1280, 32))
        >>> store = extract_patch_store(extractor, root, ["elsewhere.png", "same.png"], root / "patches")
        >>> ranked, distances = np.array([[0, 1]]), np.array([[0.5, 0.6]])  # the global search put "elsewhere" first
        >>> verified = verify_ranking(extractor, store, [root / "query.png"], ranked, distances, top=2)
        >>> verified.ranked, verified.scores
        (array([[1, 0]]), array([[1., 0.]]))
        >>> folder.cleanup()
    """
    top = clamp_top(top, len(store.stores[0].names))
    preset = extractor.preset
    out = np.full((len(ranked), top), -1, dtype=np.int64)
    scores = np.zeros((len(ranked), top))
    raw = np.zeros((len(ranked), top, len(preset.sizes)))
    seconds, extract_seconds, skipped = np.zeros(len(ranked)), np.zeros(len(ranked)), 0
    generator = torch.Generator().manual_seed(seed)
    if lanes is not None and lanes < 1:
        raise ValueError(f"lanes must be at least 1, got {lanes}")
    if lanes is not None and lanes > 1 and preset.scorer != "rapid":
        raise ValueError(f"the {preset.scorer} scorer matches queries in one lane (its hypotheses come from one "
                         f"generator, query after query), got lanes={lanes}")
    lanes = match_lanes(preset) if lanes is None else lanes

    def match(item: tuple[int, Patches]) -> tuple[int, np.ndarray, torch.Tensor | None, int, float]:
        """A query's (index, shortlist kept, raw scores (None: no shortlist), sizes skipped, seconds)."""
        q, query = item
        start = time.perf_counter()
        keep = ranked[q, :top] >= 0
        if not keep.any():  # a query without a global descriptor: nothing to re-rank
            return q, keep, None, 0, 0.0
        raw_q, empty = shortlist_scores(query, ranked[q, :top][keep], store.read, preset, generator)
        return q, keep, raw_q, empty, time.perf_counter() - start

    found = _timed(_query_patches(extractor, store, query_paths, device, query_patches), extract_seconds)
    matched = ordered_map(match, found, lanes, 2 * lanes) if lanes > 1 else map(match, found)
    for q, keep, raw_q, empty, took in matched:
        if raw_q is None:
            continue
        rows = ranked[q, :top][keep]
        order, final = fused_order(raw_q, distances[q, :top][keep], preset)
        out[q, :len(rows)], scores[q, :len(rows)] = rows[order], final[order]
        raw[q, np.flatnonzero(keep)] = raw_q.T.numpy()
        skipped += empty
        seconds[q] = took
    return VerifiedRanking(out, scores, skipped, seconds, store.bytes_per_image(), extract_seconds, raw)


def match_lanes(preset: VerifyPreset) -> int:
    """Threads :func:`verify_ranking` matches queries in by default: with the ``rapid`` scorer, as many as the
    cores hold torch's thread count (a query's matching is small products and reductions, run one query a lane);
    with ``ransac``, one.

    Examples:
        >>> from netvlad.match.verify.presets import get_preset
        >>> match_lanes(get_preset("performance"))  # RANSAC: hypotheses from one generator, query after query
        1
    """
    if preset.scorer != "rapid":
        return 1
    return max(1, usable_cores() // torch.get_num_threads())


def _timed(batches: Iterator[tuple[Sequence[int], list[Patches]]], seconds: np.ndarray
           ) -> Iterator[tuple[int, Patches]]:
    """(query index, its patches) of each batch of ``batches``, with the time the batch took to make shared
    among its queries in ``seconds``."""
    while True:
        start = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return
        indices, found = batch
        seconds[list(indices)] = (time.perf_counter() - start) / max(1, len(indices))
        yield from zip(indices, found, strict=True)


def rescore_ranking(raw: np.ndarray, ranked: np.ndarray, distances: np.ndarray, preset: VerifyPreset, top: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(ranked ``(Q, top)``, scores ``(Q, top)``) as :func:`verify_ranking` with ``preset`` and ``top`` gives them,
    from the raw patch scores ``raw`` ``(Q, ≥ top, S)`` of a run over the same ranking (``ranked``/``distances``
    ``(Q, ≥ top)``, −1: none) with the same patch sizes and scorer: another λ or a shorter top costs no matching.

    Exact for the ``rapid`` scorer (a candidate's score depends on it and the query alone); with ``ransac`` the
    hypotheses drawn for a candidate depend on the candidates scored before it.

    Examples:
        >>> from netvlad.match.verify.presets import get_preset
        >>> raw = np.array([[[0.1], [0.4], [0.2]]])  # one query, three candidates, one patch size
        >>> ranked, distances = np.array([[7, 3, 5]]), np.array([[0.5, 0.9, 0.6]])
        >>> rescore_ranking(raw, ranked, distances, get_preset("speed").with_global_weight(0.0), top=3)[0]
        array([[3, 5, 7]])
        >>> rescore_ranking(raw, ranked, distances, get_preset("speed").with_global_weight(0.0), top=2)[0]
        array([[3, 7]])
    """
    top = min(top, raw.shape[1])
    out = np.full((len(ranked), top), -1, dtype=np.int64)
    scores = np.zeros((len(ranked), top))
    for q in range(len(ranked)):
        keep = np.flatnonzero(ranked[q, :top] >= 0)
        if not len(keep):
            continue
        order, final = fused_order(torch.from_numpy(np.ascontiguousarray(raw[q, keep].T)), distances[q, keep], preset)
        out[q, :len(keep)], scores[q, :len(keep)] = ranked[q, keep][order], final[order]
    return out, scores


def _query_patches(extractor: PatchExtractor, store: PatchStore, query_paths: Sequence[Path | str], device,
                   query_patches: PatchStore | None):
    """Yield (query indices, their :class:`Patches`): read from ``query_patches``, else extracted one by one."""
    if query_patches is None:
        for indices, images in iter_images(extractor.model, query_paths, batch_size=1, device=device):
            yield indices, extractor.from_images(images)
        return
    if [query_patches.meta.get(k) for k in KEYS] != [store.meta.get(k) for k in KEYS] or not all(
            s.complete and len(s) == len(query_paths) for s in query_patches.stores):
        raise BadInputError(f"{query_patches.folder}: the queries' patch store does not hold every query's patches "
                            f"for {describe_identity(store.meta)}; delete it to extract them again",
                            path=query_patches.folder)
    for q in range(len(query_paths)):
        sizes = [query_patches.read(i, np.array([q])) for i in range(len(query_patches.stores))]
        grids = [tuple(int(v) for v in g[0]) for _, g in sizes]
        yield [q], [Patches([d[0, :r * c] for (d, _), (r, c) in zip(sizes, grids, strict=True)], grids)]


def verify_folders(extractor: PatchExtractor, database_root: Path, database_names: Sequence[str],
                   query_paths: Sequence[Path | str], ranked: np.ndarray, distances: np.ndarray, top: int,
                   store_dir: Path, device: str | torch.device = "cpu", query_folder: Path | None = None
                   ) -> VerifiedRanking:
    """Database patch store of ``extractor`` (model, preset, whitening: :func:`patch_extractor`'s for this
    database) in ``store_dir`` (resumed), then :func:`verify_ranking`; ``query_folder``: a patch store of the
    queries written by :func:`extract_with_patches`, read when it exists.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.extract import extract_descriptors
        >>> from netvlad.models import ModelConfig
        >>> from netvlad.search import exact_search
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> distances, ranked = exact_search(extract_descriptors(model, city.database.paths()),
        ...                                  extract_descriptors(model, city.queries.paths()), k=5)  # global shortlist
        >>> preset = VerifyPreset("toy", "1 × 1 patches, 16-D", sizes=(1,), dim=16, scorer="rapid")
        >>> extractor = patch_extractor(model, preset, city.database.paths())  # its whitening fitted once
        >>> verified = verify_folders(extractor, city.database.root, city.database.names, city.queries.paths(),
        ...                           ranked, distances, top=5, store_dir=Path("verify"))
        >>> verified.ranked.shape, all(set(v) == set(r) for v, r in zip(verified.ranked, ranked))  # re-ordered
        ((10, 5), True)
    """
    extractor.model.to(device).eval()
    store = extract_patch_store(extractor, database_root, database_names, store_dir / extractor.preset.name,
                                device=device)
    logger.info("patch store %s: %d bytes per image", store.folder, store.bytes_per_image())
    query_patches = None
    if query_folder is not None and (Path(query_folder) / "patches.json").is_file():
        query_patches = PatchStore.open(query_folder)
    return verify_ranking(extractor, store, query_paths, ranked, distances, top, device, query_patches=query_patches)

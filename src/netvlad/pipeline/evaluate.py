"""Evaluate a model on a dataset in one call: k-means of an off-the-shelf NetVLAD, the engine resolved once, the
descriptor stores filled, then protocol, sequence or plain Recall@N, spatial re-ranking and the report files —
what ``netvlad evaluate`` prints and writes, for a Python user."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netvlad.constants import EVAL_RADIUS_M
from netvlad.errors import BadInputError
from netvlad.match.sequence import DEFAULT_METHOD
from netvlad.match.verify.presets import TOP

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationSettings:
    """Everything one evaluation decides from: the model (loaded or built, before k-means; or ``load_model``, a
    function that loads it, called once the dataset has opened, so a wrong dataset is reported before any weights
    load), the dataset (``source`` opened with ``dataset_options``, :func:`netvlad.data.open_dataset`'s keywords,
    or under ``protocol`` as the protocol reads it), and the options of extraction, search, sequence matching and
    re-ranking. ``radius`` in metres (None: 25 m); ``max_memory`` in bytes (None: the library's default).

    Examples:
        >>> from netvlad.models import ModelConfig, PlaceModel
        >>> settings = EvaluationSettings(model=PlaceModel(ModelConfig(pool="gem")), source=Path("city"), ns=(1, 5))
        >>> settings.engine, settings.radius, settings.store  # torch, the library's 25 m, descriptors in memory
        ('torch', None, None)
    """

    model: Any
    source: Path
    dataset_options: dict = field(default_factory=dict)
    checkpoint: Path | None = None  # the model's file, named in the report's label (None: off the shelf)
    protocol: Any = None  # a :class:`netvlad.eval.protocols.Protocol`
    sequence: Any = None  # a :class:`netvlad.match.sequence.SequenceConfig`: also sequence Recall@N
    sequence_method: str = DEFAULT_METHOD
    sequence_model: Path | None = None  # seqnet: the trained SeqNet file
    verify: Any = None  # a spatial re-ranking preset (:data:`netvlad.match.verify.VERIFY_PRESETS`)
    verify_top: int = TOP  # candidates re-ranked (the default chosen across sets)
    ns: tuple[int, ...] = (1, 5, 10, 20)
    radius: float | None = None
    device: Any = "cpu"
    engine: str = "torch"
    store: Path | None = None
    dtype: str = "float32"
    skip_bad: bool = False
    batch_size: int = 8
    workers: int = 0
    progress: bool = False
    index_config: Any = None  # a :class:`netvlad.search.index.IndexConfig` (None: exact search)
    max_memory: float | None = None
    cluster: Any = None  # a :class:`netvlad.extract.clusters.ClusterConfig` (None: its defaults)
    cluster_cache: Path | bool = True  # k-means centroids cached: True the default folder, False none, or a folder
    places: Any = None  # a :class:`netvlad.data.place_range.PlaceRange`: a sequence's places A to B-1 only
    output: Path | None = None  # the JSON report; the CSV and pictures go beside it
    pictures: int = 6  # queries drawn in the retrieval picture (0: none)
    load_model: Callable[[], Any] | None = None  # instead of ``model`` (None): called after the dataset opened

    def __post_init__(self) -> None:
        if (self.model is None) == (self.load_model is None):
            raise ValueError("EvaluationSettings takes a model or a load_model function, one of the two")


@dataclass
class EvaluationResult:
    """What one evaluation found: ``result`` (single-frame Recall@N), the dataset evaluated, the model's
    ``label``, the ``engine`` that ran, and the optional parts (sequence, protocol run, re-ranking, Recall@N per
    query condition) and the files written (``verified_csv`` first, then the report's).

    Examples:
        >>> from netvlad.data import synthetic
        >>> from netvlad.models import ModelConfig, PlaceModel
        >>> city = Path(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> model = PlaceModel(ModelConfig(pool="gem", preprocessing={"resize": "none"})).eval()  # ImageNet weights
        >>> found = run_evaluation(EvaluationSettings(model, city, output=Path("out/city.json"), pictures=0))
        >>> found.engine, found.result.num_queries, [Path(p).name for p in found.written]
        ('torch', 10, ['city.json', 'city_queries.csv', 'city_recall.png', 'city_pr.png'])
    """

    result: Any
    dataset: Any
    label: str
    engine: str
    opened: Any = None  # the dataset as opened (a protocol's evaluation may drop unmatched queries)
    protocol: Any = None
    protocol_run: Any = None
    sequence_result: Any = None
    verified: Any = None
    conditions: Any = None
    held_out: dict | None = None  # a checkpoint that records its training data: Recall@N of held-out, seen places
    by_condition: dict = field(default_factory=dict)
    verified_csv: Path | None = None
    written: list = field(default_factory=list)


def refuse_sequence_with_protocol(sequence, protocol) -> None:
    """Refuse sequence matching under a published protocol (not supported)."""
    if sequence is not None and protocol is not None:
        raise BadInputError(f"--sequence with --protocol is not supported: a protocol's evaluation drops unmatched "
                            "queries and scores per group (MSLS cities) without the sequence matcher; drop "
                            f"--protocol {protocol.name} and name the folders and tolerance yourself "
                            "(--database, --queries, --frame-tolerance)")


def open_evaluation(settings: EvaluationSettings):
    """The dataset of ``settings`` (under its protocol, checked), refusing the combinations not supported."""
    from netvlad.data import open_dataset
    from netvlad.eval import protocol_eval

    protocol = settings.protocol
    refuse_sequence_with_protocol(settings.sequence, protocol)
    if protocol:
        dataset = protocol_eval.open_for_protocol(settings.source, protocol,
                                                  image_root=settings.dataset_options.get("image_root"),
                                                  skip_bad=settings.skip_bad)
    else:
        dataset = open_dataset(settings.source, **settings.dataset_options)
    if settings.places is not None:
        if protocol:
            raise BadInputError(f"--places with --protocol is not supported: protocol {protocol.name} chooses its "
                                "own queries; drop one of them")
        dataset = settings.places.select(dataset)
    return dataset


def check_verify_model(settings: EvaluationSettings, model) -> None:
    """Refuse re-ranking with a model whose pooling is not NetVLAD (or without a store), before any extraction."""
    if settings.verify is None:
        return
    from netvlad.match.verify.patches import require_netvlad

    if settings.store is None:
        raise BadInputError("--verify needs --store DIR: the database's patch descriptors are kept there "
                            "(a rerun reuses them)")
    require_netvlad(model)


def run_evaluation(settings: EvaluationSettings) -> EvaluationResult:
    """Evaluate ``settings.model`` on its dataset (see the module docstring); with ``settings.output`` the JSON
    summary, per-query CSV and pictures are written. Under torchrun every rank calls this; the ranks other than 0
    end once their descriptors are in the store.

    Examples:
        >>> from netvlad.data import synthetic
        >>> from netvlad.models import ModelConfig, PlaceModel
        >>> city = Path(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> model = PlaceModel(ModelConfig(pool="gem", preprocessing={"resize": "none"})).eval()  # ImageNet weights
        >>> found = run_evaluation(EvaluationSettings(model, city, ns=(1, 5)))  # what `netvlad evaluate` computes
        >>> found.result.num_queries, found.result.num_database, found.result.recall[1] <= found.result.recall[5]
        (10, 20, True)
    """
    from netvlad.data.conditions import query_conditions
    from netvlad.eval import protocol_eval
    from netvlad.eval.recall import evaluate
    from netvlad.eval.report import condition_recall
    from netvlad.extract.processes import extract_on_every_rank, join_processes, prepare_model
    from netvlad.parallel import leave_quietly

    device, info = join_processes(settings.device, settings.store, "netvlad evaluate needs --store DIR")
    protocol, dataset = settings.protocol, open_evaluation(settings)
    model = settings.model if settings.load_model is None else settings.load_model()
    check_verify_model(settings, model)
    if protocol:
        protocol_eval.with_input_size(model, protocol)
    model = prepare_model(model, dataset.database.paths(), info, device, config=settings.cluster,
                          progress=settings.progress, batch_size=settings.batch_size, workers=settings.workers,
                          skip_bad=settings.skip_bad, cache=settings.cluster_cache)
    # the engine resolved once, after k-means (an export holds the final weights): every rank extracts with it, the
    # evaluation reuses it, and the report names the engine that ran
    store, extractor = settings.store, None
    engine = make_engine(settings.engine, model, device, len(dataset.database) + len(dataset.queries))
    if shares_backbone_pass(settings, info, device):
        from netvlad.eval.verified import extract_for_verify
        from netvlad.extract.engine import ExportError

        logger.info("re-ranking on a CPU: descriptors and patches from one backbone pass per image")
        try:
            extractor = extract_for_verify(model, dataset, settings.verify, store, settings.cluster_cache,
                                           settings.dtype, settings.batch_size, engine)  # the re-ranking's whitening
        except ExportError as error:  # --engine onnxruntime, whose export with the feature maps is refused
            logger.info("the export with the feature maps cannot be used (%s); descriptors by onnxruntime, patches "
                        "by torch in a second pass", error)
    if store is not None and not extract_on_every_rank(
            model, [(dataset.database, store / "database", "database"),
                    (dataset.queries, store / "queries", "queries")], info, dtype=settings.dtype,
            skip_bad=settings.skip_bad, batch_size=settings.batch_size, workers=settings.workers, device=device,
            progress=settings.progress, engine=engine):
        leave_quietly()  # another rank: its rows are in the store, rank 0 evaluates
    index_config = settings.index_config
    if index_config is None:
        from netvlad.search.index import IndexConfig

        index_config = IndexConfig()
    common = dict(ns=settings.ns, batch_size=settings.batch_size, workers=settings.workers, device=device,
                  progress=settings.progress, store_dir=store, skip_bad=settings.skip_bad, dtype=settings.dtype,
                  index_config=index_config, max_memory=settings.max_memory, engine=engine)
    radius = EVAL_RADIUS_M if settings.radius is None else settings.radius
    out = EvaluationResult(None, dataset, model_label(settings.checkpoint, model), engine.name, opened=dataset,
                           protocol=protocol)
    if protocol:
        out.protocol_run = protocol_eval.evaluate_protocol(model, dataset, protocol, **common)
        out.result, out.dataset = out.protocol_run.result, out.protocol_run.dataset
    elif settings.sequence is not None:
        out.result, out.sequence_result = run_sequences(settings, model, dataset, radius, common)
    else:
        out.result = evaluate(model, dataset, radius=radius, **common)
    if settings.verify is not None:
        from netvlad.eval.verified import verify_evaluation
        from netvlad.match.verify.run import patch_extractor

        if extractor is None:
            extractor = patch_extractor(model, settings.verify, out.dataset.database.paths(), settings.cluster_cache,
                                        device)
        out.verified = verify_evaluation(extractor, out.dataset, out.result.positives, store, settings.verify_top,
                                         settings.ns, device, out.sequence_result)
    out.held_out = held_out_recall(settings.checkpoint, out.result, out.dataset)
    out.conditions = query_conditions(out.dataset)
    out.by_condition = condition_recall(out.result, out.conditions)
    if settings.output:
        write_outputs(settings, out, model)
    return out


def shares_backbone_pass(settings: EvaluationSettings, info, device) -> bool:
    """Whether the descriptors and the re-ranking's patches come from one backbone pass (:func:`run_evaluation`):
    re-ranking into a store on a CPU, one process, no protocol (with ``--engine onnxruntime`` an export returning
    the feature maps too, else a second pass gives the patches: :func:`netvlad.extract.engine.local_runner`)."""
    return (settings.verify is not None and settings.store is not None and not info.active
            and settings.protocol is None and str(device).split(":")[0] == "cpu")


def held_out_recall(checkpoint: Path | None, result, dataset) -> dict | None:
    """With a checkpoint that records its training data: Recall@N of its held-out and seen places (None without)."""
    from netvlad.data.provenance import Provenance
    from netvlad.eval.held_out import recall_held_out
    from netvlad.models.io import read_checkpoint

    if checkpoint is None:
        return None
    return recall_held_out(result, dataset, Provenance.from_extra(read_checkpoint(checkpoint, tensors=False)[2]))


def make_engine(name: str, model, device, images: int):
    """The runner of engine ``name`` resolved for ``model`` on ``device`` (exported once; ``.name``: what runs)."""
    from netvlad.extract.engine import EngineConfig, make_runner

    runner = make_runner(model, EngineConfig(name=name), device, images=images)
    threads = getattr(runner, "threads", 0)
    logger.info("descriptors by %s (%s)", runner.name, f"{threads} thread{'s' * (threads != 1)}" if threads
                else f"device {device}")
    return runner


def model_label(checkpoint: Path | None, model) -> str:
    """``checkpoint [fingerprint]`` or ``backbone+pool (off-the-shelf) [fingerprint]``."""
    source = str(checkpoint) if checkpoint else f"{model.config.backbone}+{model.config.pool} (off-the-shelf)"
    return f"{source} [{model.fingerprint()}]"


def run_sequences(settings: EvaluationSettings, model, dataset, radius: float, common: dict):
    """Single-frame and sequence results over descriptors extracted once."""
    from netvlad.eval.sequence import evaluate_sequences

    encoder = None
    if settings.sequence_model is not None:
        from netvlad.match.seqnet import seqnet_encoder
        from netvlad.models.seqnet import load_seqnet

        encoder = seqnet_encoder(load_seqnet(settings.sequence_model, descriptor_dim=model.output_dim,
                                             length=settings.sequence.length))
    extract = {k: common[k] for k in ("batch_size", "workers", "device", "progress", "skip_bad", "dtype", "engine")}
    return evaluate_sequences(model, dataset, settings.sequence, settings.sequence_method, encoder=encoder,
                              radius=radius, ns=common["ns"], store_dir=common["store_dir"],
                              index_config=common["index_config"], max_memory=common["max_memory"], **extract)


def write_outputs(settings: EvaluationSettings, out: EvaluationResult, model) -> None:
    """The JSON summary, per-query CSV (with the sequence columns under sequence matching, and the re-ranked one
    ``<stem>_verified.csv``) and pictures; their paths into ``out``."""
    from netvlad.eval import protocol_eval
    from netvlad.eval.report import report_paths, write_report
    from netvlad.numerics import numeric_environment

    dataset, result = out.dataset, out.result
    sizes = protocol_eval.image_sizes(dataset, model.config.preprocessing)
    extra = {"dataset": dataset.name, "engine": out.engine, "numerics": numeric_environment() | {"engine": out.engine}}
    extra |= out.protocol_run.report(sizes) if out.protocol_run else {"image_sizes": sizes}
    if out.sequence_result is not None:
        extra["sequence_recall"] = out.sequence_result.summary()
    if out.held_out:
        extra["recall_by_training_use"] = {k: {"num_queries": v["num_queries"],
                                               "recall": {str(n): round(r, 4) for n, r in v["recall"].items()}}
                                           for k, v in out.held_out.items()}
    if out.verified is not None:
        from netvlad.eval.verified import write_verified_csv

        out.verified_csv = write_verified_csv(out.verified, dataset, result.positives,
                                              Path(f"{Path(settings.output).with_suffix('')}_verified.csv"))
        extra |= out.verified.summary()
    out.written = write_report(result, dataset, settings.output, out.label, extra, out.conditions,
                               pictures=settings.pictures, radius=settings.radius)
    if out.sequence_result is not None:
        from netvlad.eval.sequence import add_sequence_columns

        add_sequence_columns(report_paths(settings.output)["csv"], out.sequence_result, dataset.database)


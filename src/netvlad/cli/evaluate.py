"""`netvlad evaluate DATASET`: Recall@N of a checkpoint or an off-the-shelf model, with a JSON/CSV/PNG report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from netvlad.cli.common import add_device_args, add_model_args, number, output
from netvlad.cli.dataset_args import add_dataset_args
from netvlad.cli.engine_args import add_engine_arg
from netvlad.cli.names import INDEX_KINDS
from netvlad.cli.protocol_args import add_protocol_args, check_protocol_args, group_table
from netvlad.cli.sequence_args import add_sequence_args, sequence_config_from_args
from netvlad.constants import EVAL_RADIUS_M
from netvlad.errors import BadInputError
from netvlad.limits import COUNT, NON_NEGATIVE_INT, POSITIVE, Limit

logger = logging.getLogger(__name__)


def parse_ns(text: str) -> tuple[int, ...]:
    """``"1,5,10"`` -> (1, 5, 10); a clear error for anything else."""
    try:
        ns = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        ns = ()
    if not ns or ns[0] < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers ≥ 1 (e.g. 1,5,10), got {text!r}")
    return ns


parse_ns.limit = COUNT  # each value; read by the argument sweep test


def add_index_args(parser: argparse.ArgumentParser) -> None:
    """The faiss index options (``--index-type``, IVF/PQ/HNSW settings and the search options)."""
    group = parser.add_argument_group("search index")
    group.add_argument("--index-type", "--index-kind", dest="index_kind", default="flat", choices=INDEX_KINDS,
                       help="exact flat L2 (streams the database from disk), IVF-PQ, OPQ + IVF-PQ or HNSW")
    group.add_argument("--nlist", type=number(COUNT), default=None, help="IVF: inverted lists (default √N)")
    group.add_argument("--pq-m", type=number(COUNT), default=None,
                       help="PQ: sub-quantisers (default: dim/16 bytes per image, i.e. dim/8 of 4 bits)")
    group.add_argument("--pq-bits", type=number(Limit(1, 16, integer=True)), default=4,
                       help="PQ: bits per sub-quantiser code (4: SIMD fast-scan, the fastest; else classic IVF-PQ)")
    add_search_args(group)


def add_search_args(group) -> None:
    """Search-time options shared by ``evaluate``, ``index build`` and ``query``."""
    group.add_argument("--nprobe", type=number(COUNT), default=None,
                       help="IVF: lists visited per query (default: lists holding ≥ 16,384 vectors, at least 16)")
    group.add_argument("--ef-search", type=number(COUNT), default=128, help="HNSW: search beam width")
    group.add_argument("--rerank", type=number(NON_NEGATIVE_INT), default=100, metavar="C",
                       help="IVF-PQ: re-rank the top C candidates exactly from the stored descriptors (0: off)")
    group.add_argument("--max-memory", type=number(POSITIVE), default=None, metavar="GIB",
                       help="working memory of exact search and index building, GiB (default: half the available)")


def max_memory_from_args(args: argparse.Namespace) -> float | None:
    """``--max-memory`` in bytes (None: the library's default)."""
    return None if args.max_memory is None else args.max_memory * 1024**3


def index_config_from_args(args: argparse.Namespace, device=None):
    """The :class:`netvlad.eval.index.IndexConfig` of the command line; faiss uses a GPU only when ``--device``
    picked CUDA."""
    from netvlad.eval.index import IndexConfig

    return IndexConfig(kind=getattr(args, "index_kind", "flat"), nlist=getattr(args, "nlist", None),
                       m=getattr(args, "pq_m", None), nbits=getattr(args, "pq_bits", 4), nprobe=args.nprobe,
                       ef_search=args.ef_search, rerank=args.rerank,
                       use_gpu=device is not None and device.type == "cuda")


def add_cluster_images_arg(parser) -> None:
    """``--cluster-images``: database images k-means samples for an off-the-shelf NetVLAD."""
    parser.add_argument("--cluster-images", type=number(COUNT), default=500,
                        help="off-the-shelf NetVLAD: database images sampled for k-means")


def add_extract_args(parser: argparse.ArgumentParser) -> None:
    """Where descriptors are kept, their type, and k-means sampling for an off-the-shelf NetVLAD."""
    group = parser.add_argument_group("descriptors")
    group.add_argument("--store", type=Path, default=None, metavar="DIR",
                       help="keep descriptors here (memory-mapped .npy); a rerun continues an interrupted run")
    group.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="stored descriptor type")
    add_cluster_images_arg(group)


def model_label(args: argparse.Namespace, model) -> str:
    """``checkpoint [fingerprint]`` or ``backbone+pool (off-the-shelf) [fingerprint]``."""
    source = str(args.model) if args.model else f"{model.config.backbone}+{model.config.pool} (off-the-shelf)"
    return f"{source} [{model.fingerprint()}]"


def cluster_if_off_the_shelf(model, paths: list[Path], args: argparse.Namespace, device) -> None:
    """k-means NetVLAD centroids from database images, for a NetVLAD model not loaded from a checkpoint."""
    from netvlad.nn import NetVLAD
    from netvlad.train.clusters import ClusterConfig, initialize_clusters

    if args.model is not None or not isinstance(model.pool, NetVLAD):
        return
    logger.info("off-the-shelf NetVLAD: clustering local descriptors of %d database images first",
                min(len(paths), args.cluster_images))
    initialize_clusters(model, paths, config=ClusterConfig(num_images=args.cluster_images), device=device,
                        progress=not args.no_progress, batch_size=args.batch_size, workers=args.workers)


def artefact_paths(output: Path) -> dict[str, Path]:
    """results.json -> results.json, results_queries.csv, results_recall.png, results_pr.png,
    results_retrievals.png."""
    stem = output.with_suffix("")
    return {"json": output, "csv": Path(f"{stem}_queries.csv"), "plot": Path(f"{stem}_recall.png"),
            "pr": Path(f"{stem}_pr.png"), "picture": Path(f"{stem}_retrievals.png")}


def run(args: argparse.Namespace) -> int:
    """Evaluate (under ``--protocol`` when given), print the tables, and write the report files."""
    from netvlad.cli.common import model_from_args
    from netvlad.cli.dataset_args import dataset_from_args
    from netvlad.cli.engine_args import engine_from_args
    from netvlad.cli.ranks import fill_stores, prepare_model, start
    from netvlad.data.conditions import query_conditions
    from netvlad.eval import protocol_eval
    from netvlad.eval.report import condition_recall, condition_table, pr_line
    from netvlad.eval.retrieval import evaluate
    from netvlad.protocols import get_protocol

    device, info = start(args, args.store, "netvlad evaluate needs --store DIR")
    sequence = sequence_config_from_args(args)
    protocol = get_protocol(args.protocol) if args.protocol else None
    if sequence is not None and protocol is not None:
        raise BadInputError(f"--sequence with --protocol is not supported; drop --protocol {protocol.name} and "
                            "name the folders and tolerance yourself")
    if protocol:
        check_protocol_args(args, protocol)
        dataset = protocol_eval.open_for_protocol(args.dataset, protocol, image_root=args.image_root,
                                                  skip_bad=args.skip_bad)
    else:
        dataset = dataset_from_args(args)
    if info.is_main:
        print(dataset)
    model = model_from_args(args)
    if protocol:
        protocol_eval.with_input_size(model, protocol)
    model = prepare_model(model, dataset.database.paths(), args, device, info)
    if args.store is not None and not fill_stores(model, [(dataset.database, args.store / "database", "database"),
                                                         (dataset.queries, args.store / "queries", "queries")],
                                                  args, device, info):
        return 0  # another rank: its rows are in the store, rank 0 evaluates
    engine = engine_from_args(args, model, device)  # resolved once: the report names the engine that ran
    common = dict(ns=args.recall, batch_size=args.batch_size, workers=args.workers, device=device,
                  progress=not args.no_progress, store_dir=args.store, skip_bad=args.skip_bad, dtype=args.dtype,
                  index_config=index_config_from_args(args, device),
                  max_memory=max_memory_from_args(args), engine=engine)
    sequence_result = None
    if protocol:
        protocol_run = protocol_eval.evaluate_protocol(model, dataset, protocol, **common)
        result, dataset = protocol_run.result, protocol_run.dataset
    elif sequence is not None:
        protocol_run = None
        result, sequence_result = run_sequences(args, model, dataset, sequence, common)
    else:
        protocol_run = None
        result = evaluate(model, dataset, radius=EVAL_RADIUS_M if args.radius is None else args.radius,
                          **common)
    label = model_label(args, model)
    print(f"{label}: {result.num_queries} queries, {result.num_database} database images, "
          f"{result.descriptor_dim}-D descriptors" + (f", protocol {protocol.name}" if protocol else ""))
    print(result.table() if sequence_result is None else sequence_result.table(result))
    print(pr_line(result))
    if protocol_run and protocol_run.per_group:
        print(group_table(protocol_run.per_group, protocol.group_by or "group"))
    conditions = query_conditions(dataset)
    by_condition = condition_recall(result, conditions)
    if by_condition and len(by_condition) > 1:
        print(condition_table(by_condition))
    if args.output:
        sizes = protocol_eval.image_sizes(dataset, model.config.preprocessing)
        extra = {"dataset": dataset.name, "engine": engine.name}
        extra |= protocol_run.report(sizes) if protocol_run else {"image_sizes": sizes}
        if sequence_result is not None:
            extra["sequence_recall"] = sequence_result.summary()
        write_report(args, result, dataset, label, extra, conditions, sequence_result)
    return 0


def run_sequences(args: argparse.Namespace, model, dataset, sequence, common: dict):
    """Single-frame and sequence results (``--sequence``) over descriptors extracted once."""
    from netvlad.cli.sequence_args import encoder_from_args
    from netvlad.eval.sequence.evaluate import evaluate_sequences

    encoder = encoder_from_args(args, sequence, model.output_dim)
    extract = {k: common[k] for k in ("batch_size", "workers", "device", "progress", "skip_bad", "dtype")}
    return evaluate_sequences(model, dataset, sequence, args.sequence_method, encoder=encoder,
                              radius=EVAL_RADIUS_M if args.radius is None else args.radius, ns=common["ns"],
                              store_dir=common["store_dir"], index_config=common["index_config"],
                              max_memory=common["max_memory"], **extract)


def write_report(args: argparse.Namespace, result, dataset, label: str, extra: dict, conditions,
                 sequence_result=None) -> None:
    """The JSON summary, per-query CSV, Recall@N plot and retrieval picture beside ``--output``."""
    from netvlad.eval.plots import plot_recall, retrieval_picture
    from netvlad.eval.pr_plot import plot_pr
    from netvlad.eval.report import result_pr, write_json, write_query_csv

    paths = artefact_paths(Path(args.output))
    write_json(result, paths["json"], label, extra, conditions=conditions)
    write_query_csv(result, dataset, paths["csv"], conditions=conditions)
    if sequence_result is not None:
        from netvlad.eval.sequence.evaluate import add_sequence_columns

        add_sequence_columns(paths["csv"], sequence_result, dataset.database)
    plot_recall({label: result.recall}, paths["plot"], title=dataset.name)
    plot_pr({label: result_pr(result)}, paths["pr"], title=dataset.name)
    if not args.no_pictures:
        retrieval_picture(result, dataset, paths["picture"])
    print("wrote " + ", ".join(str(p) for p in paths.values() if p.exists()))


def register(subparsers) -> None:
    """Add ``netvlad evaluate``."""
    parser = subparsers.add_parser("evaluate", help="Recall@N of a model on a dataset",
                                   description="Recall@N of a checkpoint or an off-the-shelf backbone on a "
                                               "dataset, with a JSON summary, per-query CSV and pictures.")
    add_dataset_args(parser)
    add_model_args(parser)
    add_device_args(parser)
    add_engine_arg(parser)
    add_extract_args(parser)
    add_index_args(parser)
    group = parser.add_argument_group("evaluation")
    add_protocol_args(group)
    add_sequence_args(parser)
    group.add_argument("--radius", type=number(POSITIVE), default=None,
                       help=f"metres within which a database image is correct (default {EVAL_RADIUS_M:g})")
    group.add_argument("--recall", type=parse_ns, default=(1, 5, 10, 20), help="N values, e.g. 1,5,10,20")
    group.add_argument("--output", type=output(), default=None,
                       help="results JSON; the CSV, Recall@N PNG and retrieval picture go beside it")
    group.add_argument("--no-pictures", action="store_true", help="skip the retrieval picture")
    parser.set_defaults(func=run)

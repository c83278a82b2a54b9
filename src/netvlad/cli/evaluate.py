"""`netvlad evaluate DATASET`: Recall@N of a checkpoint or an off-the-shelf model, with a JSON/CSV/PNG report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from netvlad.cli.common import add_device_args, add_model_args, number, output
from netvlad.cli.dataset_args import add_dataset_args
from netvlad.cli.names import INDEX_KINDS
from netvlad.constants import EVAL_RADIUS_M
from netvlad.limits import COUNT, POSITIVE, Limit

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
    """The faiss index options (``--index-kind``, IVF-PQ's ``--nlist/--pq-m/--pq-bits/--nprobe``)."""
    group = parser.add_argument_group("search index")
    group.add_argument("--index-kind", default="flat", choices=INDEX_KINDS, help="exact flat L2 or IVF-PQ")
    group.add_argument("--nlist", type=number(COUNT), default=256, help="IVF-PQ: inverted lists")
    group.add_argument("--pq-m", type=number(COUNT), default=32,
                       help="IVF-PQ: sub-quantisers (must divide the dim)")
    group.add_argument("--pq-bits", type=number(Limit(1, 16, integer=True)), default=8,
                       help="IVF-PQ: bits per sub-quantiser code")
    group.add_argument("--nprobe", type=number(COUNT), default=16, help="IVF-PQ: lists visited per query")


def index_config_from_args(args: argparse.Namespace):
    """The :class:`netvlad.eval.index.IndexConfig` the arguments describe."""
    from netvlad.eval.index import IndexConfig

    return IndexConfig(kind=args.index_kind, nlist=args.nlist, m=args.pq_m, nbits=args.pq_bits, nprobe=args.nprobe)


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
    """results.json -> results.json, results_queries.csv, results_recall.png, results_retrievals.png."""
    stem = output.with_suffix("")
    return {"json": output, "csv": Path(f"{stem}_queries.csv"), "plot": Path(f"{stem}_recall.png"),
            "picture": Path(f"{stem}_retrievals.png")}


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, and write the report files."""
    from netvlad.cli.common import model_from_args, pick_device
    from netvlad.cli.dataset_args import dataset_from_args
    from netvlad.eval.retrieval import evaluate

    device = pick_device(args.device)
    dataset = dataset_from_args(args)
    print(dataset)
    model = model_from_args(args)
    cluster_if_off_the_shelf(model, dataset.database.paths(), args, device)
    result = evaluate(model, dataset, radius=args.radius, ns=args.recall, batch_size=args.batch_size,
                      workers=args.workers, device=device, progress=not args.no_progress, store_dir=args.store,
                      skip_bad=args.skip_bad, dtype=args.dtype, index_config=index_config_from_args(args))
    label = model_label(args, model)
    print(f"{label}: {result.num_queries} queries, {result.num_database} database images, "
          f"{result.descriptor_dim}-D descriptors")
    print(result.table())
    if args.output:
        write_report(args, result, dataset, label)
    return 0


def write_report(args: argparse.Namespace, result, dataset, label: str) -> None:
    """The JSON summary, per-query CSV, Recall@N plot and retrieval picture beside ``--output``."""
    from netvlad.eval.plots import plot_recall, retrieval_picture
    from netvlad.eval.report import write_json, write_query_csv

    paths = artefact_paths(Path(args.output))
    write_json(result, paths["json"], label, {"dataset": dataset.name})
    write_query_csv(result, dataset, paths["csv"])
    plot_recall({label: result.recall}, paths["plot"], title=dataset.name)
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
    add_extract_args(parser)
    add_index_args(parser)
    group = parser.add_argument_group("evaluation")
    group.add_argument("--radius", type=number(POSITIVE), default=EVAL_RADIUS_M,
                       help=f"metres within which a database image is correct (default {EVAL_RADIUS_M:g})")
    group.add_argument("--recall", type=parse_ns, default=(1, 5, 10, 20), help="N values, e.g. 1,5,10,20")
    group.add_argument("--output", type=output(), default=None,
                       help="results JSON; the CSV, Recall@N PNG and retrieval picture go beside it")
    group.add_argument("--no-pictures", action="store_true", help="skip the retrieval picture")
    parser.set_defaults(func=run)

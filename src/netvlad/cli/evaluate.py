"""`netvlad evaluate DATASET`: Recall@N of a checkpoint or an off-the-shelf model, with a JSON/CSV/PNG report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from netvlad.cli.common import add_device_args, add_model_args, model_from_args, pick_device
from netvlad.cli.dataset_args import add_dataset_args, dataset_from_args
from netvlad.cli.protocol_args import add_protocol_args, check_protocol_args, group_table
from netvlad.constants import EVAL_RADIUS_M
from netvlad.eval.index import INDEX_KINDS, IndexConfig
from netvlad.eval.plots import plot_recall, retrieval_picture
from netvlad.eval.report import write_json, write_query_csv
from netvlad.eval.retrieval import evaluate
from netvlad.models import PlaceModel
from netvlad.nn import NetVLAD

logger = logging.getLogger(__name__)


def parse_ns(text: str) -> tuple[int, ...]:
    """``"1,5,10"`` -> (1, 5, 10); a clear error for anything else."""
    try:
        ns = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--recall takes comma-separated integers e.g. 1,5,10, got {text!r}") from None
    if not ns or ns[0] < 1:
        raise argparse.ArgumentTypeError(f"--recall values must be ≥ 1, got {text!r}")
    return ns


def add_index_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search index")
    group.add_argument("--index-kind", default="flat", choices=sorted(INDEX_KINDS), help="exact flat L2 or IVF-PQ")
    group.add_argument("--nlist", type=int, default=256, help="IVF-PQ: inverted lists")
    group.add_argument("--pq-m", type=int, default=32, help="IVF-PQ: sub-quantisers (must divide the dim)")
    group.add_argument("--pq-bits", type=int, default=8, help="IVF-PQ: bits per sub-quantiser code")
    group.add_argument("--nprobe", type=int, default=16, help="IVF-PQ: lists visited per query")


def index_config_from_args(args: argparse.Namespace) -> IndexConfig:
    return IndexConfig(kind=args.index_kind, nlist=args.nlist, m=args.pq_m, nbits=args.pq_bits, nprobe=args.nprobe)


def add_extract_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("descriptors")
    group.add_argument("--store", type=Path, default=None, metavar="DIR",
                       help="keep descriptors here (memory-mapped .npy); a rerun continues an interrupted run")
    group.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="stored descriptor type")
    group.add_argument("--cluster-images", type=int, default=500,
                       help="off-the-shelf NetVLAD: database images sampled for k-means")


def model_label(args: argparse.Namespace, model: PlaceModel) -> str:
    source = str(args.model) if args.model else f"{model.config.backbone}+{model.config.pool} (off-the-shelf)"
    return f"{source} [{model.fingerprint()}]"


def cluster_off_the_shelf(model: PlaceModel, paths: list[Path], args: argparse.Namespace, device) -> None:
    """k-means NetVLAD centroids from database images, for a NetVLAD model not loaded from a checkpoint."""
    from netvlad.train.clusters import ClusterConfig, initialize_clusters  # noqa: PLC0415 - only when needed

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
    from netvlad.data.conditions import query_conditions  # noqa: PLC0415
    from netvlad.eval import protocol_eval  # noqa: PLC0415
    from netvlad.eval.report import condition_recall, condition_table  # noqa: PLC0415
    from netvlad.protocols import get_protocol  # noqa: PLC0415

    device = pick_device(args.device)
    protocol = get_protocol(args.protocol) if args.protocol else None
    if protocol:
        check_protocol_args(args, protocol)
        dataset = protocol_eval.open_for_protocol(args.dataset, protocol, image_root=args.image_root,
                                                  skip_bad=args.skip_bad)
    else:
        dataset = dataset_from_args(args)
    print(dataset)
    model = model_from_args(args)
    if protocol:
        protocol_eval.with_input_size(model, protocol)
    if args.model is None and isinstance(model.pool, NetVLAD):
        cluster_off_the_shelf(model, dataset.database.paths(), args, device)
    common = dict(ns=args.recall, batch_size=args.batch_size, workers=args.workers, device=device,
                  progress=not args.no_progress, store_dir=args.store, skip_bad=args.skip_bad, dtype=args.dtype,
                  index_config=index_config_from_args(args))
    if protocol:
        protocol_run = protocol_eval.evaluate_protocol(model, dataset, protocol, **common)
        result, dataset = protocol_run.result, protocol_run.dataset
    else:
        protocol_run = None
        result = evaluate(model, dataset, radius=EVAL_RADIUS_M if args.radius is None else args.radius,
                          **common)
    label = model_label(args, model)
    print(f"{label}: {result.num_queries} queries, {result.num_database} database images, "
          f"{result.descriptor_dim}-D descriptors" + (f", protocol {protocol.name}" if protocol else ""))
    print(result.table())
    if protocol_run and protocol_run.per_group:
        print(group_table(protocol_run.per_group, protocol.group_by or "group"))
    conditions = query_conditions(dataset)
    by_condition = condition_recall(result, conditions)
    if by_condition and len(by_condition) > 1:
        print(condition_table(by_condition))
    if args.output:
        paths = artefact_paths(Path(args.output))
        sizes = protocol_eval.image_sizes(dataset, model.config.preprocessing)
        extra = {"dataset": dataset.name} | (protocol_run.report(sizes) if protocol_run else {"image_sizes": sizes})
        write_json(result, paths["json"], label, extra, conditions=conditions)
        write_query_csv(result, dataset, paths["csv"], conditions=conditions)
        plot_recall({label: result.recall}, paths["plot"], title=dataset.name)
        if not args.no_pictures:
            retrieval_picture(result, dataset, paths["picture"])
        print("wrote " + ", ".join(str(p) for p in paths.values() if p.exists()))
    return 0


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
    add_protocol_args(group)
    group.add_argument("--radius", type=float, default=None,
                       help=f"metres within which a database image is correct (default {EVAL_RADIUS_M:g})")
    group.add_argument("--recall", type=parse_ns, default=(1, 5, 10, 20), help="N values, e.g. 1,5,10,20")
    group.add_argument("--output", type=Path, default=None,
                       help="results JSON; the CSV, Recall@N PNG and retrieval picture go beside it")
    group.add_argument("--no-pictures", action="store_true", help="skip the retrieval picture")
    parser.set_defaults(func=run)

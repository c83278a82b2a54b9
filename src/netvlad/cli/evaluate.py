"""`netvlad evaluate DATASET`: Recall@N of a checkpoint or an off-the-shelf model, with a JSON/CSV/PNG report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from netvlad.cli.common import add_device_args, add_model_args, model_from_args, pick_device
from netvlad.cli.dataset_args import add_dataset_args, dataset_from_args
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
    group.add_argument("--index-type", "--index-kind", dest="index_kind", default="flat", choices=sorted(INDEX_KINDS),
                       help="exact flat L2 (streams the database from disk), IVF-PQ, OPQ + IVF-PQ or HNSW")
    group.add_argument("--nlist", type=int, default=None, help="IVF: inverted lists (default √N)")
    group.add_argument("--pq-m", type=int, default=None, help="PQ: sub-quantisers (default dim/16)")
    group.add_argument("--pq-bits", type=int, default=8, help="PQ: bits per sub-quantiser code")
    add_search_args(group)


def add_search_args(group) -> None:
    """Search-time options shared by ``evaluate``, ``index build`` and ``query``."""
    group.add_argument("--nprobe", type=int, default=16, help="IVF: lists visited per query")
    group.add_argument("--ef-search", type=int, default=128, help="HNSW: search beam width")
    group.add_argument("--rerank", type=int, default=100, metavar="C",
                       help="IVF-PQ: re-rank the top C candidates exactly from the stored descriptors (0: off)")
    group.add_argument("--max-memory", type=float, default=None, metavar="GIB",
                       help="working memory of exact search and index building, GiB (default: half the available)")


def max_memory_from_args(args: argparse.Namespace) -> float | None:
    """``--max-memory`` in bytes (None: the library's default)."""
    if args.max_memory is None:
        return None
    if args.max_memory <= 0:
        raise ValueError(f"--max-memory must be > 0 GiB, got {args.max_memory}")
    return args.max_memory * 1024**3


def index_config_from_args(args: argparse.Namespace, device=None) -> IndexConfig:
    """The index settings of the command line; faiss uses a GPU only when ``--device`` picked CUDA."""
    return IndexConfig(kind=getattr(args, "index_kind", "flat"), nlist=getattr(args, "nlist", None),
                       m=getattr(args, "pq_m", None), nbits=getattr(args, "pq_bits", 8), nprobe=args.nprobe,
                       ef_search=args.ef_search, rerank=args.rerank,
                       use_gpu=device is not None and device.type == "cuda")


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
    device = pick_device(args.device)
    dataset = dataset_from_args(args)
    print(dataset)
    model = model_from_args(args)
    if args.model is None and isinstance(model.pool, NetVLAD):
        cluster_off_the_shelf(model, dataset.database.paths(), args, device)
    result = evaluate(model, dataset, radius=args.radius, ns=args.recall, batch_size=args.batch_size,
                      workers=args.workers, device=device, progress=not args.no_progress, store_dir=args.store,
                      skip_bad=args.skip_bad, dtype=args.dtype, index_config=index_config_from_args(args, device),
                      max_memory=max_memory_from_args(args))
    label = model_label(args, model)
    print(f"{label}: {result.num_queries} queries, {result.num_database} database images, "
          f"{result.descriptor_dim}-D descriptors")
    print(result.table())
    if args.output:
        paths = artefact_paths(Path(args.output))
        write_json(result, paths["json"], label, {"dataset": dataset.name})
        write_query_csv(result, dataset, paths["csv"])
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
    group.add_argument("--radius", type=float, default=25.0, help="metres within which a database image is correct")
    group.add_argument("--recall", type=parse_ns, default=(1, 5, 10, 20), help="N values, e.g. 1,5,10,20")
    group.add_argument("--output", type=Path, default=None,
                       help="results JSON; the CSV, Recall@N PNG and retrieval picture go beside it")
    group.add_argument("--no-pictures", action="store_true", help="skip the retrieval picture")
    parser.set_defaults(func=run)

"""`netvlad cluster`: initialise a NetVLAD model's clusters (k-means + α) from a dataset's database images."""

from __future__ import annotations

import argparse
import dataclasses

from netvlad.cli.options import add_dataset_args, add_device_args, add_model_args, number, output
from netvlad.extract.clusters import ClusterConfig
from netvlad.limits import COUNT, NON_NEGATIVE_INT


def run_cluster(args: argparse.Namespace) -> int:
    """k-means the database images' local descriptors and write the checkpoint."""
    from netvlad.cli.options import dataset_from_args, model_from_args, pick_device
    from netvlad.extract import ClusterConfig, initialize_clusters
    from netvlad.models import save_model

    dataset = dataset_from_args(args)
    model = model_from_args(args)
    config = ClusterConfig(num_descriptors=args.descriptors, per_image=args.per_image, num_images=args.images,
                           seed=args.seed, niter=args.niter)
    alpha = initialize_clusters(model, dataset.database.paths(), config, pick_device(args.device),
                                not args.no_progress, args.batch_size, args.workers)
    out = save_model(model.cpu(), args.out, extra={"step": "k-means initialisation", "alpha": alpha,
                                                   "dataset": dataset.name})
    print(out)
    return 0


def register(subparsers) -> None:
    """Add ``netvlad cluster``."""
    parser = subparsers.add_parser("cluster", help="k-means-initialise NetVLAD clusters from a dataset",
                                   description="Sample local descriptors from the database images, k-means them "
                                               "(faiss) and set the NetVLAD centroids and α; writes a checkpoint.")
    add_dataset_args(parser)
    parser.add_argument("--out", required=True, type=output(), help="checkpoint to write (.safetensors)")
    add_model_args(parser)
    add_device_args(parser)
    d = dataclasses.asdict(ClusterConfig())
    group = parser.add_argument_group("sampling")
    group.add_argument("--descriptors", type=number(COUNT), default=d["num_descriptors"],
                       help=f"local descriptors in all (default {d['num_descriptors']})")
    group.add_argument("--per-image", type=number(COUNT), default=d["per_image"],
                       help=f"descriptors sampled per image (default {d['per_image']})")
    group.add_argument("--images", type=number(COUNT), default=d["num_images"],
                       help=f"images sampled (default {d['num_images']})")
    group.add_argument("--seed", type=number(NON_NEGATIVE_INT), default=d["seed"])
    group.add_argument("--niter", type=number(COUNT), default=d["niter"],
                       help=f"k-means iterations (default {d['niter']})")
    parser.set_defaults(func=run_cluster)

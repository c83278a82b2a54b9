"""`netvlad cluster`: initialise a NetVLAD model's clusters (k-means + α) from a dataset's database images."""

from __future__ import annotations

import argparse

from netvlad.cli.common import add_device_args, add_model_args, model_from_args, pick_device
from netvlad.cli.dataset_args import add_dataset_args, dataset_from_args
from netvlad.models import save_model
from netvlad.train import ClusterConfig, initialize_clusters


def run_cluster(args: argparse.Namespace) -> int:
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
    parser.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    add_model_args(parser)
    add_device_args(parser)
    defaults = ClusterConfig()
    group = parser.add_argument_group("sampling")
    group.add_argument("--descriptors", type=int, default=defaults.num_descriptors, help="local descriptors in all")
    group.add_argument("--per-image", type=int, default=defaults.per_image, help="descriptors sampled per image")
    group.add_argument("--images", type=int, default=defaults.num_images, help="images sampled")
    group.add_argument("--seed", type=int, default=defaults.seed)
    group.add_argument("--niter", type=int, default=defaults.niter, help="k-means iterations")
    parser.set_defaults(func=run_cluster)

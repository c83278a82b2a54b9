"""`netvlad seqnet train DATASET --out SEQNET.safetensors`: a SeqNet on a model's descriptors of the training
places, validated on the held-out ones; `netvlad evaluate --sequence-method seqnet --sequence-model` uses it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from netvlad.cli.options import add_dataset_args, add_device_args, add_extract_args, add_model_args, number, output
from netvlad.limits import COUNT, NON_NEGATIVE_INT, POSITIVE, Limit

logger = logging.getLogger(__name__)


def add_seqnet_args(parser: argparse.ArgumentParser) -> None:
    """The SeqNet and its training: L, D', kernel, PCA, epochs, queries, optimiser, mining, validation places."""
    from netvlad.train.seqnet import SeqNetTraining

    default = SeqNetTraining()
    group = parser.add_argument_group("SeqNet (Garg & Milford 2021) and its training")
    group.add_argument("--length", type=number(Limit(2, integer=True)), default=default.length, metavar="L",
                       help="frames per sequence (causal: the window ends at the frame it describes)")
    group.add_argument("--output-dim", type=number(COUNT), default=default.output_dim, metavar="D'",
                       help="sequence descriptor dimensions")
    group.add_argument("--kernel", type=number(COUNT), default=default.kernel, help="temporal convolution width")
    group.add_argument("--pca", type=number(NON_NEGATIVE_INT), default=default.pca_dim, metavar="P",
                       help="project each frame on its top P principal components first (0: none; e.g. 512 for "
                            "20,480-D NetVLAD descriptors)")
    group.add_argument("--epochs", type=number(COUNT), default=default.epochs, help="passes of mining + training")
    group.add_argument("--epoch-queries", type=number(COUNT), default=default.epoch_queries,
                       help="random training queries per epoch (hard negatives mined afresh each epoch)")
    group.add_argument("--lr", type=number(POSITIVE), default=default.lr, help="Adam learning rate")
    group.add_argument("--tuples", type=number(COUNT), default=default.batch, help="tuples per optimiser step")
    group.add_argument("--margin", type=number(POSITIVE), default=default.margin, help="triplet ranking margin")
    group.add_argument("--num-negatives", type=number(COUNT), default=default.num_negatives,
                       help="hardest negatives per tuple")
    group.add_argument("--negative-samples", type=number(COUNT), default=default.negative_samples,
                       help="random definite negatives they are mined from")
    group.add_argument("--seed", type=number(NON_NEGATIVE_INT), default=default.seed,
                       help="initial weights, query order and negative sampling")
    group.add_argument("--val-places", type=number(NON_NEGATIVE_INT), default=0, metavar="N",
                       help="hold out the last N places (frame-synchronised sequences) and report validation "
                            "Recall@1/5/10 of single frames, SeqSLAM, SeqNet alone and HVPR (0: train on all)")


def training_from_args(args: argparse.Namespace):
    """The :class:`~netvlad.train.seqnet.SeqNetTraining` of the command line."""
    from netvlad.train.seqnet import SeqNetTraining

    return SeqNetTraining(length=args.length, output_dim=args.output_dim, kernel=args.kernel, pca_dim=args.pca,
                          epochs=args.epochs, epoch_queries=args.epoch_queries, lr=args.lr, batch=args.tuples,
                          margin=args.margin, num_negatives=args.num_negatives,
                          negative_samples=args.negative_samples, seed=args.seed)


def run_train(args: argparse.Namespace) -> int:
    """Extract (or read from ``--store``) the descriptors, train, validate, write ``--out`` and its JSON."""
    from netvlad.cli.options import clustering, dataset_from_args, model_from_args, pick_device
    from netvlad.errors import BadInputError
    from netvlad.extract.processes import prepare_model
    from netvlad.files import refuse_overlaps
    from netvlad.parallel import DistInfo
    from netvlad.train.seqnet import run_seqnet_training, seqnet_outputs

    out, summary = seqnet_outputs(args.out)  # refused before any work
    refuse_overlaps({"--out": out, "its .json summary": summary, "--report": args.report},
                    {"--model": args.model, "--store": args.store})
    if args.report is not None and not args.val_places:
        raise BadInputError("--report writes the validation table: give --val-places N as well")
    device = pick_device(args.device)  # one process (torchrun: extract with `evaluate --store DIR` first)
    dataset = dataset_from_args(args)
    print(dataset)
    model = prepare_model(model_from_args(args), dataset.database.paths(), DistInfo(), device, **clustering(args))
    summary = run_seqnet_training(model, dataset, args.out, training_from_args(args), args.val_places, args.store,
                                  batch_size=args.batch_size, workers=args.workers, device=device,
                                  progress=not args.no_progress, skip_bad=args.skip_bad, dtype=args.dtype)
    print(f"SeqNet {summary['seqnet']}: trained in {summary['train_seconds']:.0f} s on "
          f"{summary['train_places'][0]} queries / {summary['train_places'][1]} database frames")
    for name, recall in summary.get("validation", {}).items():
        print(f"{name:<26} " + "  ".join(f"R@{n} {r:6.2f}" for n, r in recall.items()))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    if args.report is not None:
        print(f"wrote {write_report(args.report, summary, args.typed, args.seed)}")
    return 0


def write_report(path: Path, summary: dict, command: str, seed: int) -> Path:
    """``path``: the ``command`` and machine line, then the validation table (:func:`validation_table`)."""
    import torch

    from netvlad.files import atomic_write
    from netvlad.pipeline.benchmark.report import header, run_meta
    from netvlad.train.seqnet import validation_table

    text = f"{header(run_meta(command, torch.get_num_threads(), seed))}\n\n{validation_table(summary)}\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def register(subparsers) -> None:
    """Add ``netvlad seqnet train``."""
    parser = subparsers.add_parser("seqnet", help="sequence descriptors: train a SeqNet for evaluate --sequence")
    commands = parser.add_subparsers(dest="seqnet_command", metavar="SEQNET_COMMAND", required=True)
    train = commands.add_parser(
        "train", help="train a SeqNet on a model's descriptors of a dataset with sequence order",
        description="Train a SeqNet (a 1-D temporal convolution over L consecutive single-frame descriptors) on "
                    "the descriptors of a checkpoint or an off-the-shelf model, with the project's triplet ranking "
                    "loss and hard-negative mining, positives and negatives chosen by each sequence's end frame. "
                    "Descriptors are extracted once (kept in --store DIR, where `evaluate --store DIR` finds them). "
                    "Writes OUT (safetensors, config in its metadata) and OUT with .json (settings, log, "
                    "validation); use it with `netvlad evaluate --sequence L --sequence-method seqnet "
                    "--sequence-model OUT`.")
    add_dataset_args(train)
    add_model_args(train)
    add_device_args(train)
    add_extract_args(train)
    add_seqnet_args(train)
    train.add_argument("--out", type=output(), required=True, metavar="FILE.safetensors",
                       help="where the SeqNet goes (its .json summary beside it)")
    train.add_argument("--report", type=output(), default=None, metavar="FILE.md",
                       help="also write the validation Recall@N table (needs --val-places) as Markdown, its first "
                            "line this command, the date and the machine (a docs/results fragment)")
    train.set_defaults(func=run_train)

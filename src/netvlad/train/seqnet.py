"""Training a SeqNet (Garg & Milford, RA-L 2021): its settings, the training on precomputed single-frame
descriptors, and one whole run on a dataset.

Training uses the project's triplet ranking loss and hard-negative mining; positives and negatives are chosen by
each sequence's end frame (the current query frame), so a sequence descriptor is trained to find the database
sequence ending at the same place. A run extracts the single-frame descriptors once (or reads them from a store),
trains on the training places, validates on the held-out ones — single frame, SeqSLAM, SeqNet alone and HVPR
(SeqNet shortlist, SeqSLAM re-rank) side by side — and saves the SeqNet with its config and log. numpy and torch
are imported inside the functions, so the CLI shows the settings' defaults without them. The model is
:mod:`netvlad.models.seqnet`, its use in matching :mod:`netvlad.match.seqnet`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netvlad.constants import EVAL_RADIUS_M
from netvlad.errors import BadInputError
from netvlad.files import atomic_write

if TYPE_CHECKING:
    import numpy as np
    import torch

    from netvlad.data.dataset import GeoDataset
    from netvlad.models.seqnet import SeqNet


@dataclass(frozen=True)
class SeqNetTraining:
    """SeqNet training: ``length`` L (causal windows ending at the trained frame), ``output_dim`` D', ``kernel``,
    ``epochs`` over ``epoch_queries`` random queries, Adam at ``lr``, ``batch`` tuples per step; mining as the
    paper's (``margin``, ``num_negatives`` hardest of ``negative_samples`` random definite negatives), refreshed
    every epoch from the current model's descriptors; ``pca_dim`` P > 0: frames first projected on the top P
    principal components of up to ``pca_samples`` training descriptors (fitted once, kept in the model)."""

    length: int = 10
    output_dim: int = 512
    kernel: int = 5
    pca_dim: int = 0
    pca_samples: int = 2000
    epochs: int = 5
    epoch_queries: int = 1000
    lr: float = 1e-3
    batch: int = 16
    margin: float = 0.1
    num_negatives: int = 10
    negative_samples: int = 1000
    seed: int = 0


logger = logging.getLogger(__name__)


def _windows(dataset: GeoDataset, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Causal windows (N, L) of the database and (Q, L) of the queries (index 0 oldest, L−1 the end frame)."""
    from netvlad.match.seqnet import all_windows

    for side in (dataset.database, dataset.queries):
        if side.sequence is None:
            raise ValueError(f"{dataset.name}: SeqNet training needs sequence order on both sides")
    return (all_windows(dataset.database.sequence, length - 1, 0), all_windows(dataset.queries.sequence, length - 1, 0))


def _gather(descriptors: np.ndarray, windows: np.ndarray) -> torch.Tensor:
    """(B, L, D) float32 tensor of the descriptors of ``windows`` (B, L)."""
    import torch

    from netvlad.search.exact import read_rows

    rows = read_rows(descriptors, windows.reshape(-1))
    return torch.from_numpy(rows.reshape(*windows.shape, -1))


def _step(model: SeqNet, optimiser, db: np.ndarray, queries: np.ndarray, db_windows: np.ndarray,
          q_windows: np.ndarray, tuples, config: SeqNetTraining) -> float:
    """One optimiser step on ``tuples`` (query ids, positive ids, (T, J) negative ids −1 padded); the mean loss."""
    import numpy as np
    import torch

    from netvlad.train.loss import triplet_ranking_loss

    model.train()
    negatives = tuples.negatives
    mask = torch.from_numpy(negatives >= 0)
    q = model.temporal(_gather(queries, q_windows[tuples.queries]))
    p = model.temporal(_gather(db, db_windows[tuples.positives])).unsqueeze(1)
    n = model.temporal(_gather(db, db_windows[np.maximum(negatives, 0)].reshape(-1, config.length)))
    loss = triplet_ranking_loss(q, p, n.reshape(len(negatives), negatives.shape[1], -1), config.margin, mask).mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return float(loss.detach())


def train_seqnet(db: np.ndarray, queries: np.ndarray, dataset: GeoDataset, config: SeqNetTraining | None = None
                 ) -> tuple[SeqNet, list[dict]]:
    """A SeqNet trained on single-frame descriptors ``db`` (N, D) and ``queries`` (Q, D) of ``dataset`` (its
    training positives and non-negatives by the end frame); returns it and one log entry per epoch."""
    import numpy as np
    import torch

    from netvlad.match.seqnet import encode_windows, project_rows
    from netvlad.models.seqnet import SeqNet, SeqNetConfig, fit_pca
    from netvlad.search.exact import read_rows
    from netvlad.train.mining import mine

    config = config or SeqNetTraining()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = SeqNet(SeqNetConfig(int(db.shape[1]), config.output_dim, config.length, config.kernel, config.pca_dim))
    if config.pca_dim:
        picked = rng.permutation(len(db) + len(queries))[:config.pca_samples]
        sample = np.concatenate([read_rows(db, np.sort(picked[picked < len(db)])),
                                 read_rows(queries, np.sort(picked[picked >= len(db)] - len(db)))])
        fit_pca(model, torch.from_numpy(sample))
    db = project_rows(model, db, np.arange(len(db)))  # each frame projected once; training updates the conv only
    queries = project_rows(model, queries, np.arange(len(queries)))
    optimiser = torch.optim.Adam(model.conv.parameters(), lr=config.lr)
    db_windows, q_windows = _windows(dataset, config.length)
    positives, non_negatives = dataset.training_positives(), dataset.non_negatives()
    previous = np.full((len(queries), config.num_negatives), -1, np.int64)
    log = []
    for epoch in range(1, config.epochs + 1):
        seq_db = encode_windows(model, db, db_windows, projected=True)
        picked = rng.permutation(len(queries))[:config.epoch_queries]
        seq_q = encode_windows(model, queries, q_windows[picked], projected=True)
        tuples, previous[picked] = mine(seq_db, seq_q, np.arange(len(db)), positives=[positives[i] for i in picked],
                                        non_negatives=[non_negatives[i] for i in picked], previous=previous[picked],
                                        rng=rng, num_database=len(db), margin=config.margin,
                                        num_samples=config.negative_samples, num_negatives=config.num_negatives)
        tuples = type(tuples)(picked[tuples.queries], tuples.positives, tuples.negatives, tuples.skipped)
        losses = [_step(model, optimiser, db, queries, db_windows, q_windows, tuples.take(slice(a, a + config.batch)),
                        config) for a in range(0, len(tuples), config.batch)]
        log.append({"epoch": epoch, "tuples": len(tuples), "skipped": tuples.skipped,
                    "loss": float(np.mean(losses)) if losses else 0.0})
        logger.info("SeqNet epoch %d: %d tuples (%d without a violating negative), loss %.4f", epoch, len(tuples),
                    tuples.skipped, log[-1]["loss"])
    return model.eval(), log


def split_rows(dataset: GeoDataset, val_places: int) -> tuple[GeoDataset, GeoDataset | None, tuple, tuple]:
    """(train, val, (train query rows, train database rows), (val query rows, val database rows)): the last
    ``val_places`` frames held out as :meth:`GeoDataset.split_by_frames` does; 0: all training, no val."""
    import numpy as np

    if not val_places:
        everything = (np.arange(len(dataset.queries)), np.arange(len(dataset.database)))
        return dataset, None, everything, (np.zeros(0, np.int64),) * 2
    train, val = dataset.split_by_frames(val_places)
    cut = np.union1d(dataset.database.frames, dataset.queries.frames)[-val_places]
    q, db = dataset.queries.frames, dataset.database.frames
    return (train, val, (np.flatnonzero(q < cut), np.flatnonzero(db < cut)),
            (np.flatnonzero(q >= cut), np.flatnonzero(db >= cut)))


def validate(seqnet: SeqNet, db: np.ndarray, queries: np.ndarray, val: GeoDataset, ns: Sequence[int] = (1, 5, 10),
             radius: float = EVAL_RADIUS_M) -> dict[str, dict[int, float]]:
    """Recall@N on ``val`` (descriptors ``db`` (N, D), ``queries`` (Q, D)) of single frames, SeqSLAM, SeqNet alone
    and HVPR, all causal at the SeqNet's L, default matcher settings."""
    from netvlad.eval.recall import evaluate_descriptors
    from netvlad.eval.sequence import sequence_ranking
    from netvlad.match.seqnet import seqnet_encoder
    from netvlad.match.sequence import SequenceConfig

    config = SequenceConfig(length=seqnet.config.length)
    k = max(config.shortlist, max(ns))
    single = evaluate_descriptors(db, queries, val.positives(radius), ns, k=k)
    encode = seqnet_encoder(seqnet)
    alone = evaluate_descriptors(encode(db, val.database.sequence, config),
                                 encode(queries, val.queries.sequence, config), single.positives, ns, k=k)
    recall = {"single frame": single.recall, "seqnet": alone.recall}
    for name, method in (("seqslam", "seqslam"), ("seqnet → seqslam (HVPR)", "seqnet")):
        recall[name] = sequence_ranking(method, db, queries, val, single, config, ns, encoder=encode).recall
    return recall


def seqnet_outputs(out: Path | str) -> tuple[Path, Path]:
    """(the SeqNet file, its ``.json`` summary) for ``out``; refused when they would be one file."""
    out = Path(out)
    if out.suffix == ".json":
        raise BadInputError(f"{out}: the SeqNet and its .json summary would be one file; give the SeqNet another "
                            "suffix (.safetensors)", path=out, hint="--out FILE.safetensors")
    return out, out.with_suffix(".json")


def validation_table(summary: dict) -> str:
    """The validation Recall@N of a :func:`run_seqnet_training` summary as a Markdown table, under one generated
    sentence naming the data, the descriptors and the SeqNet."""
    validation = summary.get("validation")
    if not validation:
        raise BadInputError("no validation places: give val_places (--val-places N) to measure a table")
    ns = list(next(iter(validation.values())))
    training = summary["training"]
    lines = [f"{summary['dataset']}: {summary['descriptor_dim']}-D descriptors, SeqNet {summary['seqnet']}, "
             f"{training['epochs']} epochs of {training['epoch_queries']} queries, trained on "
             f"{summary['train_places'][0]} query / {summary['train_places'][1]} database frames in "
             f"{summary['train_seconds']:.0f} s; validation Recall@N (%):", "",
             "| ranking | " + " | ".join(f"R@{n}" for n in ns) + " |", "|---|" + "---:|" * len(ns)]
    lines += [f"| {name} | " + " | ".join(f"{recall[n]:.2f}" for n in ns) + " |" for name, recall in validation.items()]
    return "\n".join(lines)


def run_seqnet_training(model, dataset: GeoDataset, out: Path | str, training: SeqNetTraining | None = None,
                        val_places: int = 0, store_dir: Path | str | None = None, ns: Sequence[int] = (1, 5, 10),
                        **extract) -> dict:
    """Train a SeqNet on ``model``'s descriptors of ``dataset``'s training places, validate it on the last
    ``val_places`` (0: none), write ``out`` (safetensors with its config) and ``out`` with ``.json`` (training
    settings, log, validation Recall@N); returns that summary. ``extract``: :func:`describe`'s options."""
    from netvlad.eval.recall import describe
    from netvlad.eval.sequence import require_sequences
    from netvlad.match.sequence import SequenceConfig
    from netvlad.models.seqnet import describe_seqnet, save_seqnet
    from netvlad.search.exact import read_rows

    out, summary_path = seqnet_outputs(out)
    training = training or SeqNetTraining()
    require_sequences(dataset, SequenceConfig(length=training.length))
    store = Path(store_dir) if store_dir is not None else None
    db, _, _ = describe(model, dataset.database, store and store / "database", desc="database", **extract)
    q, _, _ = describe(model, dataset.queries, store and store / "queries", desc="queries", **extract)
    train, val, (q_train, db_train), (q_val, db_val) = split_rows(dataset, val_places)
    start = time.perf_counter()
    seqnet, log = train_seqnet(read_rows(db, db_train), read_rows(q, q_train), train, training)
    seconds = time.perf_counter() - start
    summary = {"dataset": dataset.name, "descriptor_dim": int(db.shape[1]), "training": dataclasses.asdict(training),
               "seqnet": describe_seqnet(seqnet.config), "train_seconds": round(seconds, 1), "log": log,
               "train_places": [len(q_train), len(db_train)]}
    if val is not None:
        recall = validate(seqnet, read_rows(db, db_val), read_rows(q, q_val), val, ns)
        summary["validation"] = {name: {str(n): round(r, 2) for n, r in values.items()}
                                 for name, values in recall.items()}
        for name, values in recall.items():
            logger.info("validation %s: %s", name, ", ".join(f"R@{n} {r:.1f}" for n, r in values.items()))
    save_seqnet(seqnet, out, {"log": log, "dataset": dataset.name})
    atomic_write(summary_path, lambda tmp: tmp.write_text(json.dumps(summary, indent=1),
                                                                      encoding="utf-8"))
    logger.info("SeqNet (%s) trained in %.0f s; wrote %s", summary["seqnet"], seconds, out)
    return summary

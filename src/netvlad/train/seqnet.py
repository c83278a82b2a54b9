"""Train a SeqNet on precomputed single-frame descriptors with the project's triplet ranking loss and hard-negative
mining; positives and negatives are chosen by each sequence's end frame (the current query frame), so a sequence
descriptor is trained to find the database sequence ending at the same place."""

from __future__ import annotations

import logging

import numpy as np
import torch

from netvlad.data.dataset import GeoDataset
from netvlad.match.seqnet import all_windows, encode_windows, project_rows
from netvlad.models.seqnet import SeqNet, SeqNetConfig, fit_pca
from netvlad.search.exact import read_rows
from netvlad.train.loss import triplet_ranking_loss
from netvlad.train.mining import mine
from netvlad.train.seqnet_config import SeqNetTraining

logger = logging.getLogger(__name__)


def _windows(dataset: GeoDataset, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Causal windows (N, L) of the database and (Q, L) of the queries (index 0 oldest, L−1 the end frame)."""
    for side in (dataset.database, dataset.queries):
        if side.sequence is None:
            raise ValueError(f"{dataset.name}: SeqNet training needs sequence order on both sides")
    return (all_windows(dataset.database.sequence, length - 1, 0), all_windows(dataset.queries.sequence, length - 1, 0))


def _gather(descriptors: np.ndarray, windows: np.ndarray) -> torch.Tensor:
    """(B, L, D) float32 tensor of the descriptors of ``windows`` (B, L)."""
    rows = read_rows(descriptors, windows.reshape(-1))
    return torch.from_numpy(rows.reshape(*windows.shape, -1))


def _step(model: SeqNet, optimiser, db: np.ndarray, queries: np.ndarray, db_windows: np.ndarray,
          q_windows: np.ndarray, tuples, config: SeqNetTraining) -> float:
    """One optimiser step on ``tuples`` (query ids, positive ids, (T, J) negative ids −1 padded); the mean loss."""
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

"""One SeqNet training run on a dataset: single-frame descriptors extracted once (or read from a store), SeqNet
trained on the training places, validated on the held-out ones — single frame, SeqSLAM, SeqNet alone and HVPR
(SeqNet shortlist, SeqSLAM re-rank) side by side — and saved with its config and log."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from netvlad.constants import EVAL_RADIUS_M
from netvlad.data.dataset import GeoDataset
from netvlad.eval.recall import describe, evaluate_descriptors
from netvlad.eval.sequence import require_sequences, sequence_ranking
from netvlad.files import atomic_write
from netvlad.match.seqnet import seqnet_encoder
from netvlad.match.sequence import SequenceConfig
from netvlad.models.seqnet import SeqNet, describe_seqnet, save_seqnet
from netvlad.search.exact import read_rows
from netvlad.train.seqnet import SeqNetTraining, train_seqnet

logger = logging.getLogger(__name__)


def split_rows(dataset: GeoDataset, val_places: int) -> tuple[GeoDataset, GeoDataset | None, tuple, tuple]:
    """(train, val, (train query rows, train database rows), (val query rows, val database rows)): the last
    ``val_places`` frames held out as :meth:`GeoDataset.split_by_frames` does; 0: all training, no val."""
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


def run_seqnet_training(model, dataset: GeoDataset, out: Path | str, training: SeqNetTraining | None = None,
                        val_places: int = 0, store_dir: Path | str | None = None, ns: Sequence[int] = (1, 5, 10),
                        **extract) -> dict:
    """Train a SeqNet on ``model``'s descriptors of ``dataset``'s training places, validate it on the last
    ``val_places`` (0: none), write ``out`` (safetensors with its config) and ``out`` with ``.json`` (training
    settings, log, validation Recall@N); returns that summary. ``extract``: :func:`describe`'s options."""
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
    out = Path(out)
    save_seqnet(seqnet, out, {"log": log, "dataset": dataset.name})
    atomic_write(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(summary, indent=1),
                                                                      encoding="utf-8"))
    logger.info("SeqNet (%s) trained in %.0f s; wrote %s", summary["seqnet"], seconds, out)
    return summary


"""SeqNet sequence descriptors of a whole image list: one L-frame window per frame, batched through the model."""

from __future__ import annotations

import numpy as np
import torch

from netvlad.data.sequences import SequenceOrder
from netvlad.eval.search import read_rows
from netvlad.eval.sequence.config import SequenceConfig
from netvlad.models.seqnet import SeqNet

BATCH = 64  # windows encoded at a time


def window_rows(members: np.ndarray, t: int, before: int, after: int) -> np.ndarray:
    """Image indices (before + 1 + after,) of frame ``t``'s window in a sequence (``members`` in frame order),
    padded at the sequence's ends by repeating its first / last frame."""
    picks = np.clip(np.arange(t - before, t + after + 1), 0, len(members) - 1)
    return members[picks]


def all_windows(order: SequenceOrder, before: int, after: int) -> np.ndarray:
    """(N, L) image indices of every image's window (row i: image i's), padded at sequence ends."""
    out = np.zeros((len(order), before + 1 + after), np.int64)
    for members in order.members():
        for t in range(len(members)):
            out[members[t]] = window_rows(members, t, before, after)
    return out


def encode_windows(model: SeqNet, descriptors: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """SeqNet descriptors (W, D') float32 of ``windows`` (W, L) image indices into ``descriptors`` (N, D)."""
    out = np.zeros((len(windows), model.config.output_dim), np.float32)
    model.eval()
    for a in range(0, len(windows), BATCH):
        batch = windows[a:a + BATCH]
        rows = read_rows(descriptors, batch.reshape(-1)).reshape(*batch.shape, -1)
        with torch.no_grad():
            out[a:a + BATCH] = model(torch.from_numpy(rows)).numpy()
    return out


def seqnet_encoder(model: SeqNet):
    """An encoder ``(descriptors (N, D), order, SequenceConfig) -> (N, D')`` for the sequence evaluation."""

    def encode(descriptors: np.ndarray, order: SequenceOrder | None, config: SequenceConfig) -> np.ndarray:
        order = order if order is not None else SequenceOrder.single(np.arange(len(descriptors)))
        return encode_windows(model, descriptors, all_windows(order, config.before, config.after))

    return encode

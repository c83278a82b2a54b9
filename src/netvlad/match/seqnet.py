"""SeqNet sequence descriptors of a whole image list: one L-frame window per frame, batched through the model."""

from __future__ import annotations

import numpy as np
import torch

from netvlad.data.sequences import SequenceOrder
from netvlad.match.sequence import SequenceConfig, shifted_window
from netvlad.models.seqnet import SeqNet
from netvlad.search.exact import read_rows

BATCH = 64  # windows encoded at a time


def window_rows(members: np.ndarray, t: int, before: int, after: int) -> np.ndarray:
    """Image indices (before + 1 + after,) of frame ``t``'s window in a sequence (``members`` in frame order):
    shifted inside the sequence at its ends to keep L frames, as seqNet's ``getSeqInds``; a sequence shorter than
    L is padded by repeating its first / last frame."""
    length = before + after + 1
    if len(members) >= length:
        start, stop = shifted_window(t, len(members), before, after)
        return members[start:stop]
    picks = np.clip(np.arange(t - before, t + after + 1), 0, len(members) - 1)
    return members[picks]


def all_windows(order: SequenceOrder, before: int, after: int) -> np.ndarray:
    """(N, L) image indices of every image's window (row i: image i's), padded at sequence ends."""
    out = np.zeros((len(order), before + 1 + after), np.int64)
    for members in order.members():
        for t in range(len(members)):
            out[members[t]] = window_rows(members, t, before, after)
    return out


def project_rows(model: SeqNet, descriptors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (R,) of ``descriptors`` (N, D) through the model's per-frame projection: (R, P) float32."""
    out = np.zeros((len(rows), model.config.frame_dim), np.float32)
    step = BATCH * model.config.length
    with torch.no_grad():
        for a in range(0, len(rows), step):
            out[a:a + step] = model.project(torch.from_numpy(read_rows(descriptors, rows[a:a + step]))).numpy()
    return out


def encode_windows(model: SeqNet, descriptors: np.ndarray, windows: np.ndarray, projected: bool = False
                   ) -> np.ndarray:
    """SeqNet descriptors (W, D') float32 of ``windows`` (W, L) image indices into ``descriptors`` (N, D), each
    frame projected once (``projected``: ``descriptors`` (N, P) are :meth:`SeqNet.project`'s already)."""
    if not projected:
        rows, inverse = np.unique(windows, return_inverse=True)
        descriptors, windows = project_rows(model, descriptors, rows), inverse.reshape(windows.shape)
    out = np.zeros((len(windows), model.config.output_dim), np.float32)
    model.eval()
    for a in range(0, len(windows), BATCH):
        batch = windows[a:a + BATCH]
        rows = read_rows(descriptors, batch.reshape(-1)).reshape(*batch.shape, -1)
        with torch.no_grad():
            out[a:a + BATCH] = model.temporal(torch.from_numpy(rows)).numpy()
    return out


def seqnet_encoder(model: SeqNet):
    """An encoder ``(descriptors (N, D), order, SequenceConfig) -> (N, D')`` for the sequence evaluation."""

    def encode(descriptors: np.ndarray, order: SequenceOrder | None, config: SequenceConfig) -> np.ndarray:
        order = order if order is not None else SequenceOrder.single(np.arange(len(descriptors)))
        return encode_windows(model, descriptors, all_windows(order, config.before, config.after))

    return encode

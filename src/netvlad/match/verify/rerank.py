"""Re-ranking of a global shortlist by Patch-NetVLAD patch matching: per-size scores, normalised over the shortlist,
fused across sizes with the preset's weights and (optionally) with the global similarity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from netvlad.match.verify.matching import (
    gather_positions,
    mutual_nearest,
    patch_positions,
    ransac_inliers,
    rapid_scores,
    window_centres,
)
from netvlad.match.verify.patches import Patches
from netvlad.match.verify.presets import VerifyPreset

MATCH_BYTES = 1 << 28  # similarity matrices of one candidate chunk: (chunk, m, n) float32 within 256 MiB

CandidateReader = Callable[[int, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Verified:
    """One query's re-ranked shortlist: ``order`` ``(C,)`` positions in the shortlist best first, ``scores``
    ``(C,)`` fused scores in [0, 1] (shortlist order), ``skipped`` sizes skipped for lack of windows (query or
    candidates), counted per (image, size)."""

    order: np.ndarray
    scores: np.ndarray
    skipped: int


def _positions(grids: torch.Tensor, capacity: int, size: int, stride: int, centres: bool) -> torch.Tensor:
    """Per-candidate window positions ``(C, capacity, 2)`` from grids ``(C, 2)`` (grid indices or centres, cells)."""
    index = torch.arange(capacity)[None]
    cols = grids[:, 1:2].clamp_min(1)
    xy = torch.stack([index % cols, index // cols], -1).to(torch.float64)
    return xy * stride + (size - 1) / 2 if centres else xy


def size_scores(query: torch.Tensor, grid: tuple[int, int], read: Callable[[np.ndarray], tuple], rows: np.ndarray,
                preset: VerifyPreset, size_index: int, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, int]:
    """Raw scores ``(C,)`` of the candidates at ``rows`` for one patch size, and how many had no windows.

    Candidates are read and matched in chunks whose ``(chunk, m, n)`` similarities stay within MATCH_BYTES.
    """
    size, stride, ransac = preset.sizes[size_index], preset.stride, preset.scorer == "ransac"
    q_xy = window_centres(*grid, size, stride) if ransac else patch_positions(*grid)
    scores = torch.zeros(len(rows), dtype=torch.float64)
    empty, chunk = 0, 1  # the first read (one candidate) tells the rows per candidate
    c0 = 0
    while c0 < len(rows):
        descriptors, grids = read(rows[c0:c0 + chunk])
        chunk = max(1, MATCH_BYTES // max(1, 4 * descriptors.shape[1] * len(query)))
        count = grids.prod(1)
        valid = torch.arange(descriptors.shape[1])[None] < count[:, None]
        partner, mutual = mutual_nearest(query, descriptors, valid)
        c_xy = _positions(grids, descriptors.shape[1], size, stride, ransac)
        if ransac:
            src = q_xy[None].expand(len(partner), -1, -1)
            inliers = ransac_inliers(src, gather_positions(c_xy, partner), mutual, preset.thresholds[size_index],
                                     preset.hypotheses, generator)
            part = inliers.to(torch.float64) / len(query)
        else:
            part = rapid_scores(q_xy, c_xy, partner, mutual)
        scores[c0:c0 + len(part)] = torch.where(count > 0, part, torch.zeros_like(part))
        empty += int((count == 0).sum())
        c0 += len(part)
    return scores, empty


def normalise(scores: torch.Tensor) -> torch.Tensor:
    """Min-max over the shortlist to [0, 1] (all equal: zeros)."""
    low, high = scores.min(), scores.max()
    return (scores - low) / (high - low) if high > low else torch.zeros_like(scores)


def verify_shortlist(query: Patches, rows: np.ndarray, distances: np.ndarray, read: CandidateReader,
                     preset: VerifyPreset, generator: torch.Generator | None = None) -> Verified:
    """Re-rank one query's shortlist (database ``rows`` ``(C,)``, global L2 ``distances`` ``(C,)`` ascending).

    ``read(size_index, rows)`` gives the candidates' patches (descriptors ``(C, m, dim)``, grids ``(C, 2)``). The
    score is (1 − λ)·Σ_sizes w·normalised size score + λ·normalised global similarity, λ = ``preset.global_weight``.

    Examples:
        >>> from netvlad.match.verify import PatchExtractor, VerifyPreset
        >>> from netvlad.models import ModelConfig, PlaceModel
        >>> from netvlad.nn import PCAWhitening
        >>> _ = torch.manual_seed(0)
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> preset = VerifyPreset("toy", "2 × 2 patches, 32-D", sizes=(2,), dim=32, scorer="ransac", global_weight=0)
        >>> extractor = PatchExtractor(model, preset, whitening=PCAWhitening(4 * 1280, 32))
        >>> scene = torch.rand(1, 3, 256, 320)
        >>> query, elsewhere, same_place = scene[..., :256], torch.rand(1, 3, 256, 256), scene[..., 64:]
        >>> patches = extractor.from_images(torch.cat([query, elsewhere, same_place]))
        >>> def read(size, rows):  # the candidates' patches, as a patch store reads them
        ...     return (torch.stack([patches[1 + r].descriptors[size] for r in rows]),
        ...             torch.tensor([patches[1 + r].grids[size] for r in rows]))
        >>> shortlist, distances = np.array([0, 1]), np.array([0.5, 0.6])  # global search put "elsewhere" first
        >>> verify_shortlist(patches[0], shortlist, distances, read, preset, torch.Generator().manual_seed(0)).order
        array([1, 0])
    """
    raw, skipped = shortlist_scores(query, rows, read, preset, generator)
    order, final = fused_order(raw, distances, preset)
    return Verified(order=order, scores=final, skipped=skipped)


def shortlist_scores(query: Patches, rows: np.ndarray, read: CandidateReader, preset: VerifyPreset,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """Raw patch scores ``(S, C)`` of a shortlist (``rows`` ``(C,)``), one row per patch size of ``preset`` (zeros
    for a size the query has no windows of), and how many (image, size) pairs were skipped for lack of windows.

    A candidate's raw score depends on it and the query alone (``rapid``; ``ransac`` also on the generator's
    state), so the scores of a top K are the first K of a longer shortlist's.
    """
    rows = np.asarray(rows, dtype=np.int64)
    raw = torch.zeros(len(preset.sizes), len(rows), dtype=torch.float64)
    skipped = 0
    for i in range(len(preset.sizes)):
        if not query.descriptors[i].shape[0]:
            skipped += 1
            continue
        raw[i], empty = size_scores(query.descriptors[i].float(), query.grids[i], lambda r, i=i: read(i, r), rows,
                                    preset, i, generator)
        skipped += empty
    return raw, skipped


def fuse_scores(raw: torch.Tensor, distances: np.ndarray, preset: VerifyPreset) -> torch.Tensor:
    """Final scores ``(C,)`` in [0, 1] of a shortlist from its raw patch scores ``(S, C)`` (:func:`shortlist_scores`)
    and global distances ``(C,)``: (1 − λ)·Σ_sizes w·normalised size score + λ·normalised global similarity, every
    normalisation over this shortlist, λ = ``preset.global_weight``.

    Examples:
        >>> from netvlad.match.verify.presets import get_preset
        >>> raw = torch.tensor([[0.1, 0.4, 0.2]], dtype=torch.float64)  # one patch size, three candidates
        >>> fuse_scores(raw, np.array([0.5, 0.9, 0.6]), get_preset("speed").with_global_weight(0.5))
        tensor([0.5000, 0.5000, 0.5417], dtype=torch.float64)
    """
    fused = torch.zeros(raw.shape[1], dtype=torch.float64)
    for i, weight in enumerate(preset.weights):
        fused += weight * normalise(raw[i])
    similarity = normalise(-torch.as_tensor(np.asarray(distances, dtype=np.float64)))
    return (1 - preset.global_weight) * fused + preset.global_weight * similarity


def fused_order(raw: torch.Tensor, distances: np.ndarray, preset: VerifyPreset) -> tuple[np.ndarray, np.ndarray]:
    """(order ``(C,)`` best first, stable on ties; final scores ``(C,)`` in shortlist order) of a shortlist from its
    raw patch scores ``(S, C)`` and global distances ``(C,)``, as :func:`fuse_scores` scores them.

    Examples:
        >>> from netvlad.match.verify.presets import get_preset
        >>> raw = torch.tensor([[0.1, 0.4, 0.2]], dtype=torch.float64)  # one patch size, three candidates
        >>> fused_order(raw, np.array([0.5, 0.9, 0.6]), get_preset("speed").with_global_weight(0.0))[0]
        array([1, 2, 0])
    """
    final = fuse_scores(raw, distances, preset).numpy()
    return np.argsort(-final, kind="stable"), final

"""The picture of docs/reranking.md: Gardens Point queries, their re-ranked top-1 and their global top-1 (green
border: within ±2 frames, red: not), with the mutual nearest patch matches between the query and the re-ranked
top-1 drawn as lines.

It re-ranks with the defaults the fragment ``docs/results/reranking-defaults.md`` chose (preset, λ, top K) and the
reranking suite's Gardens Point model, reading the descriptors, k-means centroids, patch whitening and database
patches that ``netvlad benchmark --suite reranking`` left in its cache (``--cache``; computed there when absent).
Shown: the first query (by frame) whose wrong global top-1 re-ranking puts right, and the first whose right global
top-1 it puts wrong, if any (queries are re-ranked in chunks until both are found).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED_DATA

CHOSEN = re.compile(r"Chosen re-ranking default: \*\*(\w+)-l([\d.]+)-k(\d+)\*\*")
MATCHES = 30  # lines drawn per pair: the most similar mutual matches
CHUNK = 25  # queries re-ranked at a time


def chosen_defaults(fragment: Path) -> tuple[str, float, int]:
    """(preset, λ, top K) named by the fragment's ``Chosen re-ranking default`` sentence."""
    found = CHOSEN.search(fragment.read_text(encoding="utf-8"))
    if found is None:
        raise SystemExit(f"{fragment}: no 'Chosen re-ranking default' line; run netvlad benchmark --suite reranking "
                         "and write its fragment first")
    return found.group(1), float(found.group(2)), int(found.group(3))


def _matches(extractor, model, paths: list[Path]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """(images as the model sees them, query window centres (n, 2), candidate centres (n, 2), similarity (n,)),
    pixels, of the ``MATCHES`` most similar mutual nearest patch pairs between ``paths[0]`` and ``paths[1]``."""
    import torch

    from netvlad.match.verify.matching import mutual_nearest, window_centres
    from netvlad.match.verify.patches import iter_images

    images, patches = {}, {}
    for indices, batch in iter_images(model, paths, batch_size=1):
        images[int(indices[0])] = (batch[0].permute(1, 2, 0).numpy() * 255).clip(0, 255).astype(np.uint8)
        patches[int(indices[0])] = extractor.from_images(batch)[0]
    size, stride = extractor.preset.sizes[0], extractor.preset.stride
    (query, candidate), centres = (patches[0], patches[1]), []
    for p, image in ((query, images[0]), (candidate, images[1])):
        rows, cols = p.grids[0]
        cells = window_centres(rows, cols, size, stride).numpy() + 0.5  # (x, y) in map cells
        map_h, map_w = (rows - 1) * stride + size, (cols - 1) * stride + size
        centres.append(cells * [image.shape[1] / map_w, image.shape[0] / map_h])
    q, c = query.descriptors[0].float(), candidate.descriptors[0].float()
    partner, mutual = mutual_nearest(q, c[None])
    keep = torch.nonzero(mutual[0]).flatten()
    similarity = (q[keep] * c[partner[0, keep]]).sum(1)
    best = keep[similarity.argsort(descending=True)[:MATCHES]]
    return ([images[0], images[1]], centres[0][best.numpy()], centres[1][partner[0, best].numpy()],
            (q[best] * c[partner[0, best]]).sum(1).numpy())


def draw_reranking(fragment: Path, png: Path, cache: Path | None = None) -> Path:
    """Re-rank Gardens Point with the fragment's chosen defaults and draw the picture (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import ConnectionPatch
    from PIL import Image

    from netvlad.eval.recall import evaluate_descriptors
    from netvlad.eval.verified import verify_given
    from netvlad.files import save_figure
    from netvlad.match.verify.presets import get_preset
    from netvlad.match.verify.run import patch_extractor
    from netvlad.pipeline.benchmark.run import default_cache, describe_spec, open_spec
    from netvlad.pipeline.benchmark.suite import load_suite

    name, weight, top = chosen_defaults(fragment)
    preset = get_preset(name).with_global_weight(weight)
    cache = default_cache() if cache is None else cache
    suite = load_suite("reranking")
    spec = next(d for d in suite.datasets if d.name == "gardens_point")
    dataset = open_spec(spec, SHARED_DATA, cache)
    db, q, model, store = describe_spec(suite, spec, dataset, cache)
    positives = dataset.positives(spec.radius)
    single = evaluate_descriptors(db, q, positives, (1,), k=top)
    paths = dataset.database.paths()
    extractor = patch_extractor(model, preset, paths, cache / "clusters")
    found: dict = {}  # (global right, re-ranked right) -> (query, re-ranked top-1)
    for start in range(0, len(positives), CHUNK):  # until both cases are found: a few chunks, not every query
        chunk = np.arange(start, min(start + CHUNK, len(positives)))
        part = dataset.subset(query_indices=chunk)
        verified = verify_given(extractor, part, [positives[i] for i in chunk], store, single.ranked[chunk, :top],
                                single.distances[chunk, :top], (1,))
        for i, after in zip(chunk, verified.ranking.ranked[:, 0], strict=True):
            found.setdefault((single.ranked[i, 0] in positives[i], after in positives[i]), (i, after))
        if (False, True) in found and (True, False) in found:
            break
    shown = [found[case] for case in ((False, True), (True, False)) if case in found]
    if not shown:
        raise SystemExit("re-ranking changed no top-1 on Gardens Point: nothing to show")
    fig, axes = plt.subplots(len(shown), 3, figsize=(10, 2.2 * len(shown) + 0.4), dpi=110, squeeze=False)
    for row, (i, after) in zip(axes, shown, strict=True):
        before = single.ranked[i, 0]
        (query, reranked), q_xy, c_xy, _ = _matches(extractor, model, [dataset.queries.paths()[i], paths[after]])
        global_image = np.asarray(Image.open(paths[before]).convert("RGB").resize(query.shape[1::-1]))
        titles = (f"query {dataset.queries.names[i]}", f"re-ranked top-1 {dataset.database.names[after]}",
                  f"global top-1 {dataset.database.names[before]}")
        for ax, image, title, ok in zip(row, (query, reranked, global_image), titles,
                                        (None, after in positives[i], before in positives[i]), strict=True):
            ax.imshow(image)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            colour = "black" if ok is None else ("tab:green" if ok else "tab:red")
            for spine in ax.spines.values():
                spine.set(edgecolor=colour, linewidth=1 if ok is None else 4)
        for (x0, y0), (x1, y1) in zip(q_xy, c_xy, strict=True):
            row[0].plot(x0, y0, "o", color="yellow", markersize=2)
            row[1].plot(x1, y1, "o", color="yellow", markersize=2)
            fig.add_artist(ConnectionPatch((x0, y0), (x1, y1), "data", "data", axesA=row[0], axesB=row[1],
                                           color="yellow", linewidth=0.5, alpha=0.6))
    fig.suptitle(f"Gardens Point day_right → day_left: {name}, λ = {weight:g}, top {top} (lines: the {MATCHES} most "
                 "similar mutual patch matches)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, png)

"""Evaluation results and localisations on disk, so a finished evaluation step is read back instead of redone.

A folder holds ``results.json`` (per method, in order: its ``.npz`` file, Recall@N and counts) and one ``.npz``
per method (``ranked``, ``distances``, ``correct``, and the positives as one flat array with offsets). No pickles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from netvlad.eval import EvalResult
from netvlad.files import atomic_write
from netvlad.pipeline.compare import Localisation

INDEX = "results.json"


def save_results(results: Mapping[str, EvalResult], folder: Path) -> Path:
    """Write every method's :class:`EvalResult` into ``folder``; returns its ``results.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for i, (label, r) in enumerate(results.items()):
        name = f"method{i}.npz"
        offsets = np.cumsum([0, *(len(p) for p in r.positives)]).astype(np.int64)
        flat = np.concatenate([np.asarray(p, dtype=np.int64) for p in r.positives]) if r.positives else \
            np.zeros(0, dtype=np.int64)
        arrays = {"ranked": r.ranked, "distances": r.distances, "correct": r.correct, "positives": flat,
                  "offsets": offsets}
        atomic_write(folder / name, lambda tmp, a=arrays: _save_npz(tmp, **a))
        index.append({"label": label, "file": name, "recall": {str(n): v for n, v in r.recall.items()},
                      "descriptor_dim": r.descriptor_dim, "num_queries": r.num_queries,
                      "num_database": r.num_database, "skipped": list(r.skipped)})
    text = json.dumps(index, indent=1) + "\n"
    return atomic_write(folder / INDEX, lambda tmp: tmp.write_text(text))


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a file handle: np.savez would append ".npz" to the temporary name
        np.savez(handle, **arrays)


def load_results(folder: Path) -> dict[str, EvalResult]:
    """The results :func:`save_results` wrote, label -> :class:`EvalResult`, in their order."""
    results = {}
    for entry in json.loads((folder / INDEX).read_text()):
        with np.load(folder / entry["file"], allow_pickle=False) as data:
            offsets, flat = data["offsets"], data["positives"]
            positives = [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
            results[entry["label"]] = EvalResult(
                recall={int(n): v for n, v in entry["recall"].items()}, ranked=data["ranked"],
                distances=data["distances"], correct=data["correct"], positives=positives,
                descriptor_dim=entry["descriptor_dim"], num_queries=entry["num_queries"],
                num_database=entry["num_database"], skipped=entry["skipped"])
    return results


def save_localisations(localised: Sequence[Localisation], path: Path) -> Path:
    """Write localisations as JSON."""
    text = json.dumps([vars(item) for item in localised], indent=1) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def load_localisations(path: Path) -> list[Localisation]:
    """Localisations :func:`save_localisations` wrote."""
    return [Localisation(item["query"], tuple(item["estimate"]), tuple(item["truth"]), item["error"],
                         item["correct"]) for item in json.loads(path.read_text())]

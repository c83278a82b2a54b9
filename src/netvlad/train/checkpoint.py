"""Resumable training state: model, optimiser, scheduler, RNG and position in the epoch, written atomically.

The descriptor cache is consumed when a chunk of queries is mined (right after each refresh), so the state keeps
what the cache decided, the chunk's mined tuples and every query's previous hard negatives, rather than the
cache itself: a resumed run re-extracts nothing and continues bit for bit.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from netvlad.errors import BadInputError
from netvlad.files import atomic_write
from netvlad.train.mining import MinedTuples

STATE_FILE = "state.pt"
BEST_FILE = "best.safetensors"  # the epoch with the best validation Recall@5
LAST_FILE = "last.safetensors"  # the latest epoch, kept when no validation set chooses one
NO_VALIDATION = "last epoch, no validation"


@dataclass
class RunState:
    """Where a run stands: everything besides model, optimiser and scheduler that resume restores."""

    rng: np.random.Generator
    previous: np.ndarray  # (num_queries, J) previous hard negatives, −1 padded
    epoch: int = 0
    position: int = 0  # queries of this epoch's order already trained on (start of the current chunk)
    order: np.ndarray | None = None  # this epoch's query order
    tuples: MinedTuples | None = None  # the current chunk's mined tuples
    batch: int = 0  # next batch of ``tuples``
    step: int = 0  # optimiser steps so far
    best_recall: float = -1.0
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)


def _tensor(array: np.ndarray | None) -> torch.Tensor | None:
    return None if array is None else torch.from_numpy(np.ascontiguousarray(array))


def _array(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.numpy()


def state_dict(state: RunState, model, optimizer, scheduler) -> dict:
    """Everything resume needs, as tensors, strings and numbers only (loadable with ``weights_only=True``)."""
    tuples = state.tuples
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": json.dumps(state.rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
        "previous": _tensor(state.previous), "epoch": state.epoch, "position": state.position,
        "order": _tensor(state.order), "batch": state.batch, "step": state.step,
        "tuples": None if tuples is None else [_tensor(tuples.queries), _tensor(tuples.positives),
                                               _tensor(tuples.negatives), tuples.skipped],
        "best_recall": state.best_recall, "best_epoch": state.best_epoch,
        "history": json.dumps(state.history),
    }


def save_state(run_dir: Path, state: RunState, model, optimizer, scheduler) -> Path:
    """Write ``run_dir/state.pt`` atomically (a crash or full disk leaves the previous one intact)."""
    data = state_dict(state, model, optimizer, scheduler)
    return atomic_write(Path(run_dir) / STATE_FILE, lambda tmp: torch.save(data, tmp))


STATE_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError,
                IndexError, TypeError, AttributeError)


def load_state(run_dir: Path, model, optimizer, scheduler) -> RunState:
    """Restore model, optimiser and scheduler from ``run_dir/state.pt``; returns where the run stands."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise BadInputError(f"{path}: no training state to resume from; start a new run instead of resuming",
                            path=path, hint="drop --resume")
    try:
        return _restore(torch.load(path, map_location="cpu", weights_only=True), model, optimizer, scheduler)
    except STATE_ERRORS as error:  # a damaged, truncated or foreign state.pt (never unpickled beyond tensors)
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        raise BadInputError(f"{path}: not a readable training state ({reason}); restore it from a backup or start "
                            "a new run", path=path) from None


def _restore(state: dict, model, optimizer, scheduler) -> RunState:
    """Load ``state`` (as :func:`save_state` wrote it) into the model, optimiser and scheduler."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(state["rng"])
    raw = state["tuples"]
    tuples = None if raw is None else MinedTuples(raw[0].numpy(), raw[1].numpy(), raw[2].numpy(), raw[3])
    return RunState(rng=rng, previous=state["previous"].numpy().copy(), epoch=state["epoch"],
                    position=state["position"], order=_array(state["order"]), tuples=tuples, batch=state["batch"],
                    step=state["step"], best_recall=state["best_recall"], best_epoch=state["best_epoch"],
                    history=json.loads(state["history"]))

"""Run logs: JSON lines (one event per line) and TensorBoard scalars; only rank 0 writes."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)


class RunLog:
    """Append events to ``run_dir/log.jsonl`` and scalars to ``run_dir/tensorboard`` (when ``tensorboard``)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "log.jsonl"
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import, optional

            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def event(self, kind: str, step: int | None = None, **values) -> None:
        """Log one event (``kind`` plus values); numeric values also go to TensorBoard under ``kind/name``."""
        if not self.enabled:
            return
        record = {"event": kind, "time": round(time.time(), 3), "step": step, **values}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None and step is not None:
            for name, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{kind}/{name}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

"""Descriptor rows gathered in memory and written to a store in groups: one synced write per second, not per batch.

Every :meth:`DescriptorStore.write` syncs two files (rows, checksums) before the status says done; at
batch 1 on a CPU those syncs cost more than the model (5–15 ms per image on our machine's disk, against 9 ms for
MobileNetV2 through onnxruntime). :class:`RowBuffer` keeps the store's promise (a row marked done is on disk) and
pays the sync once per :data:`FLUSH_SECONDS` or :data:`FLUSH_BYTES`, and on the way out — also when extraction
stops with an error or an interrupt, so every descriptor computed before it is kept and a new run continues after it.
With ``background=True`` the writes due while extraction goes on run on one helper thread, one at a time and in
order, so the next images are computed while the disk syncs (≈ 4 ms per sync here); leaving waits for all of them.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from netvlad.extract.store import DescriptorStore

FLUSH_SECONDS = 1.0  # at most this much computed work is lost when the process is killed outright
FLUSH_BYTES = 32 * 2**20  # and at most this many descriptor bytes are held in memory


class RowBuffer:
    """Rows for ``store`` held until a second has passed or 32 MiB are waiting, then written in one synced call
    (the first batch at once, so that a run shows its progress on disk, and one killed early has rows to resume).

    Use as a context manager: leaving it (normally or by an exception) writes what is held and waits for it.
    ``background``: the writes due in :meth:`add` run on a helper thread (an error surfaces at the next call).
    """

    def __init__(self, store: DescriptorStore, seconds: float = FLUSH_SECONDS, max_bytes: int = FLUSH_BYTES,
                 background: bool = False) -> None:
        self.store, self.seconds, self.max_bytes = store, seconds, max_bytes
        self._rows: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._bytes = 0
        self._since = time.monotonic() - seconds  # the first batch goes at once: progress on disk from the start
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="netvlad-rows") if background else None
        self._running: Future | None = None

    def add(self, rows: np.ndarray, descriptors: np.ndarray) -> None:
        """Hold ``descriptors`` ``(B, dim)`` for store rows ``rows`` ``(B,)``; write all held when it is time."""
        self._rows.append(np.asarray(rows, dtype=np.int64))
        self._values.append(np.asarray(descriptors))
        self._bytes += self._values[-1].nbytes
        if self._bytes >= self.max_bytes or time.monotonic() - self._since >= self.seconds:
            self._write(wait=False)

    def flush(self) -> None:
        """Write every held row now (one write: two syncs), mark them done, and wait until all writes are."""
        self._write(wait=True)

    def _write(self, wait: bool) -> None:
        self._finish()  # one write at a time, in order; a failed one raises here and the held rows stay held
        rows, values = self._rows, self._values
        self._rows, self._values, self._bytes = [], [], 0  # a failed write is not retried on the way out
        self._since = time.monotonic()
        if not rows:
            return
        job = (np.concatenate(rows), np.concatenate(values))
        if self._writer is None or wait:
            self.store.write(*job)
        else:
            self._running = self._writer.submit(self.store.write, *job)

    def _finish(self) -> None:
        """Wait for the write under way, if any; its error is raised here."""
        running, self._running = self._running, None
        if running is not None:
            running.result()

    def __enter__(self) -> RowBuffer:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.flush()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)

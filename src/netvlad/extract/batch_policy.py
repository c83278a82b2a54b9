"""How many images the torch engine's CPU model takes a call in bulk extraction: one, or a batch where batches are
measured faster on this machine.

A traced call of 8 images costs less per image than 8 calls of one at two threads or more (a fifth less for
MobileNetV2 at 240 px, docs/results/cpu-chunk.md) but not at one thread (a twentieth at best, within the noise).
So at one thread, and for inputs larger than :data:`LARGE_PIXELS` (where 8 a call measured slower), the answer
is one image a call without measuring; otherwise :func:`chunk_for` times the traced model on synthetic images
once per CPU (model name and instruction set), torch version, model configuration (not its weights: the cost
does not depend on them), input size and thread count, picks the chunk by :func:`choose_chunk`, and keeps the
answer in ``batch-policy/`` of :func:`netvlad.files.cache_root` as one JSON file with its SHA-256, written
atomically and checked on read (a damaged or foreign file is measured again, with a warning). Deterministic runs
never reach this module: they run one image a call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from netvlad.files import atomic_write, cache_root

logger = logging.getLogger(__name__)

CANDIDATES = (8,)  # images a call tried against one (16 a call measured no better than 8: docs/results/cpu-chunk.md)
# a batch must be this much cheaper per image than one image a call to be used: smaller gains are within what a
# loaded machine changes between rounds, and are not worth a row's bytes depending on where it fell in a batch
MARGIN = 0.10
ROUNDS = 3  # alternating timing rounds; the fastest of each kept (a busy machine only ever adds time)
# a model whose one image a call takes longer than this (seconds, the fastest of SLOW_TRIES) runs one a call,
# batches unmeasured (measuring would cost 50 such images; a large model keeps every core busy within one image).
# Not cached: at two threads on a busy machine calls of an 11 ms image were measured taking 420-450 ms, so a
# verdict of slow may be the machine's, and the next process tries again
SLOW_IMAGE_S = 0.25
SLOW_TRIES = 3
# inputs of more pixels than this run one a call unmeasured: MobileNetV2 at 480 × 640, two threads, measured 8 a
# call 1.6× slower per image than one a call (docs/results/batch-policy.md), at 240 × 320 1.2× faster
LARGE_PIXELS = 2 * 240 * 320
FORMAT = 1  # bump when the measurement changes


@dataclass(frozen=True)
class PolicyKey:
    """What one decision holds for: the CPU and its best instruction set, torch's version, the model's
    configuration (JSON) and its CPU copy's options, the input (3, height, width) and torch's thread count."""

    cpu: str
    isa: str
    torch: str
    model: str
    shape: tuple[int, ...]
    threads: int

    def record(self) -> dict:
        """The key as JSON-able fields (with the measurement's format)."""
        return asdict(self) | {"shape": list(self.shape), "format": FORMAT}

    @property
    def stem(self) -> str:
        """The cache file's name: 16 hex digits of the key's SHA-256."""
        return hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:16]


def policy_key(model_config, options: dict, shape: tuple[int, ...], threads: int) -> PolicyKey:
    """The :class:`PolicyKey` of a model configuration (a dataclass) run with the CPU copy's ``options`` (fold,
    channels_last) at input ``shape`` (3, H, W) on ``threads`` threads on this machine."""
    import torch

    from netvlad.numerics import cpu_isa, cpu_name

    model = json.dumps({"config": asdict(model_config), "options": options}, sort_keys=True, default=str)
    return PolicyKey(cpu_name(), cpu_isa(), torch.__version__.split("+")[0], model, tuple(shape), int(threads))


def choose_chunk(ms_per_image: dict[int, float], margin: float = MARGIN) -> int:
    """The images a call to use given measured milliseconds per image by images a call (``1`` must be there): the
    fastest chunk when it is at least ``margin`` cheaper per image than one a call, else 1.

    Examples:
        >>> choose_chunk({1: 16.3, 8: 13.1}), choose_chunk({1: 12.9, 8: 12.2}), choose_chunk({1: 10.0, 4: 8.5, 8: 8.0})
        (8, 1, 8)
    """
    best = min(ms_per_image, key=lambda chunk: (ms_per_image[chunk], chunk))
    return best if best != 1 and ms_per_image[best] <= (1.0 - margin) * ms_per_image[1] else 1


def measure(call: Callable, images, candidates: tuple[int, ...] = CANDIDATES, rounds: int = ROUNDS
            ) -> dict[int, float]:
    """Wall milliseconds per image of ``call`` (a model call on a batch) on ``images`` (at least
    ``max(candidates)``, the same size) one a call and ``chunk`` a call for each candidate: every variant once to
    warm up (the traces made), then ``rounds`` rounds in alternating order, the fastest round of each kept. Only
    one a call when a single image takes longer than :data:`SLOW_IMAGE_S` in each of :data:`SLOW_TRIES` calls."""
    count = max(candidates)
    call(images[:1])  # traced at this shape
    single = float("inf")
    for _ in range(SLOW_TRIES):
        start = time.perf_counter()
        call(images[:1])
        single = min(single, time.perf_counter() - start)
        if single <= SLOW_IMAGE_S:
            break
    else:
        return {1: round(single * 1e3, 3)}

    def timed(chunk: int) -> float:
        start = time.perf_counter()
        for first in range(0, count, chunk):
            call(images[first:first + chunk])
        return (time.perf_counter() - start) / count * 1e3

    variants = (1, *candidates)
    for chunk in candidates:
        call(images[:chunk])
    best = {chunk: float("inf") for chunk in variants}
    for round_ in range(rounds):
        for chunk in variants[round_ % len(variants):] + variants[:round_ % len(variants)]:
            best[chunk] = min(best[chunk], timed(chunk))
    return {chunk: round(ms, 3) for chunk, ms in best.items()}


def policy_folder() -> Path:
    """The decisions' folder: ``batch-policy/`` in :func:`netvlad.files.cache_root`."""
    return cache_root() / "batch-policy"


def _digest(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def read_decision(folder: Path, key: PolicyKey) -> int | None:
    """The cached images a call for ``key``; None when there is none, or (with a warning) when the file is
    damaged, foreign or its checksum fails."""
    path = folder / f"{key.stem}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        body = {name: data[name] for name in ("key", "ms_per_image", "chunk")}
        chunk = int(body["chunk"])
        valid = (data.get("sha256") == _digest(body) and body["key"] == key.record()
                 and chunk in (1, *CANDIDATES))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        logger.warning("batch policy file %s is damaged or foreign (its checksum or key does not match); "
                       "measuring again", path)
        return None
    return chunk


def write_decision(folder: Path, key: PolicyKey, ms_per_image: dict[int, float], chunk: int) -> Path:
    """Write the decision for ``key`` atomically, with the SHA-256 of its content."""
    body = {"key": key.record(), "ms_per_image": {str(k): v for k, v in sorted(ms_per_image.items())},
            "chunk": int(chunk)}
    text = json.dumps(body | {"sha256": _digest(body)}, indent=1)
    return atomic_write(folder / f"{key.stem}.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def chunk_for(key: PolicyKey, timings: Callable[[], dict[int, float]], folder: Path | None = None) -> int:
    """Images a call for ``key``: one at one thread or above :data:`LARGE_PIXELS`; else the cached decision, or
    ``timings()`` (milliseconds per image by images a call, :func:`measure`) decided by :func:`choose_chunk` and
    cached in ``folder`` (None: :func:`policy_folder`)."""
    if key.threads <= 1 or key.shape[-2] * key.shape[-1] > LARGE_PIXELS:
        return 1
    folder = Path(folder) if folder is not None else policy_folder()
    chunk = read_decision(folder, key)
    if chunk is not None:
        return chunk
    ms = timings()
    chunk = choose_chunk(ms)
    if len(ms) == 1:  # too slow to measure batches (SLOW_IMAGE_S): one a call, tried again by the next process
        logger.info("batch policy for %s×%s at %d threads: one image took %.0f ms; one image a call, unmeasured",
                    key.shape[1], key.shape[2], key.threads, ms[1])
        return chunk
    try:
        write_decision(folder, key, ms, chunk)
    except OSError as error:  # an unwritable cache costs a measurement per process, nothing else
        logger.warning("cannot cache the batch policy in %s (%s); it is measured again next time", folder, error)
    logger.info("batch policy for %s×%s at %d threads: %s ms per image by images a call -> %d a call",
                key.shape[1], key.shape[2], key.threads, ms, chunk)
    return chunk

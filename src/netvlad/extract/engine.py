"""Inference engines for extraction: the torch model, or its ONNX export run by onnxruntime.

The engines by name (:data:`ENGINES`) and the defaults come first; they import neither torch nor numpy (both are
imported on first use inside the functions), so the CLI gives ``--engine`` its choices without importing torch.

:func:`make_runner` turns ``engine="torch" | "onnxruntime" | "auto"`` (or an :class:`EngineConfig`) into a callable
``images (B, 3, H, W) float32 -> descriptors (B, dim) float32`` (onnxruntime: uint8 bytes too). onnxruntime
exports the model once per fingerprint and input policy (:mod:`netvlad.extract.onnx_cache`), checks the export
against torch on random images before first use (dynamic height and width when the model allows it, else one export
per size), and runs it with the command's thread count. ``auto`` picks onnxruntime on a CPU when it is installed
and the model exports, and says in one info line why it falls back to torch otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netvlad.errors import BadInputError
from netvlad.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch

    from netvlad.extract.onnx_cache import ExportKey
    from netvlad.models import PlaceModel
    from netvlad.models.global_and_local import GlobalAndLocal

ENGINES: Registry[str] = Registry("inference engine")
ENGINES.add("torch", "the PyTorch model itself (any device)")
ENGINES.add("onnxruntime", "the model exported once to ONNX and run by onnxruntime (CPU; CUDA with onnxruntime-gpu)")
ENGINES.add("auto", "onnxruntime on a CPU for the backbones it is measured faster on (when installed and the model "
                    "exports), torch otherwise")

# backbones whose whole pipeline onnxruntime runs faster than torch on a CPU at 1 thread, batch 1 and 16
# (docs/engine.md); auto keeps torch for the others, so it is never slower than torch
AUTO_ONNX_BACKBONES = frozenset({"mobilenet_v2", "resnet50_layer3"})

LIBRARY_ENGINE = "torch"  # the library's functions: no export written unless asked for
# the commands' default (docs/engine.md measures why); NETVLAD_ENGINE in the environment overrides it
COMMAND_ENGINE = "auto"
ENGINE_VARIABLE = "NETVLAD_ENGINE"
ONNX_EXTRA = "pip install 'netvlad[export]'"  # the extra that brings onnxruntime


logger = logging.getLogger(__name__)

AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}  # torch dtypes by name
CHECK_TOLERANCE = 1e-4  # max abs difference to torch on random images before an export is used
CHECK_SIZES = ((96, 128), (128, 96))  # pixels: traced at the first, checked at both (a second size proves dynamic)
_SESSIONS: OrderedDict = OrderedDict()  # the last few sessions of this process, reused across calls
# the last few checked exports written nowhere (persist False), so that a session at another thread count (a lane's
# one-thread session beside the runner's own) opens them again instead of exporting the model a second time
_UNSAVED: OrderedDict = OrderedDict()
_SESSIONS_LOCK = threading.Lock()  # guards both
_KEEP = 4
# per model (weakly held: gone with it), the CPU copies TorchRunner made of it with its tensors' versions, so that
# repeated extractions with unchanged weights fold once (≈ 0.1–0.25 s for MobileNetV2)
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# images per torch call on a CPU outside bulk extraction: one a call has one shape per image size unpadded, so an
# image's bytes do not depend on its batch, a batch of one costs one image, and a streamed frame runs the graph
# extraction's rows come from. Bulk extraction (POLICY_MIN_IMAGES or more) asks netvlad.extract.batch_policy
TORCH_CPU_IMAGES = 1
# images from which extraction lets the batch policy run full batches (measured once per machine, model, size and
# threads); below it a measurement (≈ 2 s for MobileNetV2 at 240 px) would cost more than it saves
POLICY_MIN_IMAGES = 64
# images per onnxruntime call on a CPU: its time per image is flat from 1 to 8 images a call (measured side by side)
ORT_CPU_IMAGES = 1
# per model copy, the input shapes traced (the first ones seen; later shapes run eagerly): a trace holds the weights.
# At one image a call a shape is an image size, so this bounds the traces to the first 8 sizes a copy meets
TRACED_SHAPES = 8
# onnxruntime's session.dynamic_block_base: a parallel loop of N iterations is handed out in blocks of
# N / (threads × this) iterations at first, smaller as the rest shrinks, so a worker whose core is taken leaves its
# blocks to the others (the same bits: only which thread computes a block changes)
DYNAMIC_BLOCK_BASE = 4
TRACE_MIN_IMAGES = 64  # make_runner traces for at least this many images: a trace (≈ 0.5 s) costs ≈ 30 images' gain
AUTO_MIN_IMAGES = 64  # auto keeps torch below this: loading (≈1 s) or exporting (≈10 s) would cost more than it saves


class ExportError(RuntimeError):
    """The model cannot run through onnxruntime (export failed, or its output differs from torch)."""


@dataclass(frozen=True)
class EngineConfig:
    """How extraction runs the model: ``name`` (torch, onnxruntime, auto); onnxruntime's intra-op ``threads``
    (None: torch's current thread count); the export ``cache`` folder (None: :func:`cache_folder`); ``persist``
    False exports in memory and writes nothing (weights that change at every call, as in training); ``uint8``:
    onnxruntime takes the decoded image bytes and converts them inside its graph (the same descriptors within
    1e-5; extraction then decodes to uint8, skipping the float conversion); ``lanes``: onnxruntime on a CPU,
    extraction describes this many images at once, each decoded and run by its own thread through a one-thread
    session (None: as many as ``threads``, so that with two or more threads the cores are shared by images, not
    by the loops of one image; docs/engine.md measures both; 1: one image at a time on ``threads`` threads);
    ``chunk``: images a CPU model call (None: torch runs bulk extraction by its measured batch policy,
    :mod:`netvlad.extract.batch_policy`, and everything else one image a call; onnxruntime one a call). A lane runs
    one image a call, so ``lanes`` and ``chunk`` both above 1 are refused."""

    name: str = LIBRARY_ENGINE
    threads: int | None = None
    cache: Path | None = None
    persist: bool = True
    uint8: bool = False
    lanes: int | None = None
    chunk: int | None = None

    def __post_init__(self) -> None:
        if self.lanes is not None and self.lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {self.lanes}")
        if self.chunk is not None and self.chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {self.chunk}")
        if self.name == "torch" and (self.uint8 or self.lanes is not None):
            raise ValueError("uint8 and lanes are onnxruntime's options: engine torch takes float images one "
                             "batch at a time (use engine onnxruntime or auto)")
        _refuse_lanes_with_chunk(self.lanes, self.chunk)


def _refuse_lanes_with_chunk(lanes: int | None, chunk: int | None) -> None:
    """ValueError where both ``lanes`` and ``chunk`` exceed 1 (the lanes would be dropped without a word)."""
    if (lanes or 1) > 1 and (chunk or 1) > 1:
        raise ValueError(f"lanes > 1 and chunk > 1 cannot be combined (lanes={lanes}, chunk={chunk}): lanes decode "
                         "and run one image per lane, chunk batches images per call; use lanes=N with chunk=None "
                         "or 1, or chunk=N with lanes=1")


def in_chunks(call, images, step: int, pad: bool = False) -> np.ndarray:
    """``call`` over ``images`` (B, …), a torch tensor or numpy array, ``step`` images at a time -> its outputs
    concatenated. ``pad``: a short last chunk is filled up with zeros to ``step`` images (their rows dropped), so
    that every call has one shape and a row's bytes do not depend on the batch it arrived in (the CPU kernels pick
    their blocking, and with it the float rounding, by the batch's shape; same-shape neighbours change nothing)."""
    import numpy as np
    import torch

    parts = []
    for first in range(0, len(images), step):
        chunk = images[first:first + step]
        short = step - len(chunk) if pad else 0
        if short:
            fill = (images.new_zeros((short, *images.shape[1:])) if isinstance(images, torch.Tensor)
                    else np.zeros((short, *images.shape[1:]), images.dtype))
            chunk = torch.cat([chunk, fill]) if isinstance(images, torch.Tensor) else np.concatenate([chunk, fill])
        out = call(chunk)
        parts.append(tuple(o[:step - short] for o in out) if isinstance(out, tuple) else out[:step - short])
    return join_outputs(parts)


def join_outputs(parts: list) -> np.ndarray:
    """Consecutive runner outputs (arrays, or tuples of them) as one: the single part itself, else concatenated."""
    import numpy as np

    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], tuple):  # (descriptors, local feature maps)
        return tuple(map(np.concatenate, zip(*parts, strict=True)))
    return np.concatenate(parts)


class TorchRunner:
    """The model itself: channels_last under ``amp`` autocast on CUDA. On a CPU, for a model in eval mode, a private
    copy with its batch norms folded into the convolutions (``fold``), in ``channels_last``, traced and frozen by
    TorchScript and compiled by oneDNN Graph per input shape (``trace``: :mod:`netvlad.models.tracing`), run in
    chunks of ``chunk`` images (None: :data:`TORCH_CPU_IMAGES`, one image a call, so one trace per image size; with
    ``policy``, per image size the images a call :func:`netvlad.extract.batch_policy.chunk_for` measured faster on
    this machine, full chunks only, the rest one a call; never under deterministic kernels or with ``cut``):
    the fastest measured torch path on a CPU (docs/engine.md). The copy is made again when one of the model's
    tensors changes (a training step, ``load_state_dict``); a model with a module in training mode runs as it is.
    With ``cut`` (see :meth:`with_local`) a call returns (descriptors, local feature maps of the first ``cut``
    backbone stages), both from one pass of one graph."""

    name = "torch"
    uint8 = False  # takes float images in [0, 1] only
    lanes = 1  # one image at a time
    cut: int | None = None
    _local: GlobalAndLocal | None = None  # the model wrapped to return its local maps too, built once per ``cut``

    def __init__(self, model: PlaceModel, device: torch.device, amp: str | None = "bf16", fold: bool = True,
                 channels_last: bool = True, trace: bool = True, chunk: int | None = None, pad: bool = False,
                 policy: bool = False) -> None:
        import torch

        self.model, self.device, self.cuda = model, device, device.type == "cuda"
        if self.cuda:
            self.model = model.to(memory_format=torch.channels_last)
        self.amp = amp
        self.cpu = device.type == "cpu"
        self.fold, self.channels_last, self.trace, self.chunk, self.pad = fold, channels_last, trace, chunk, pad
        self.policy = policy
        self._chunks: dict[tuple, int] = {}  # the policy's images a call by (input shape, threads)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        import torch

        if self.cpu:
            return self._cpu(images)
        images = images.to(self.device, non_blocking=True)
        autocast = (torch.autocast("cuda", dtype=getattr(torch, AUTOCAST[self.amp])) if self.cuda and self.amp
                    else contextlib.nullcontext())
        if self.cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast:
            return _numpy(self._module()(images))

    def _cpu(self, images: torch.Tensor) -> np.ndarray:
        import torch

        with torch.inference_mode():
            step = self._policy_chunk(tuple(images.shape[1:])) if self._policed() else 1
            if step == 1 or any(m.training for m in self.model.modules()):  # a training batch norm: as it is
                return in_chunks(self._call, images, self.chunk or TORCH_CPU_IMAGES, self.pad)
            # full chunks of the measured size, the rest one a call: no call pays for images it does not hold
            full = len(images) // step * step
            parts = [in_chunks(self._call, images[:full], step)] if full else []
            return join_outputs([*parts, in_chunks(self._call, images[full:], 1)] if full < len(images) else parts)

    def _call(self, chunk: torch.Tensor) -> np.ndarray:
        """One CPU model call on ``chunk`` (B, 3, H, W), under inference mode."""
        import torch

        chunk = chunk.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        return _numpy(self.inference_model(tuple(chunk.shape), chunk)(chunk))

    def _policed(self) -> bool:
        """True when this runner's CPU chunk is the batch policy's (``policy``, no ``chunk`` forced, traced, no local
        maps, the CPU's own kernels)."""
        if not (self.policy and self.chunk is None and self.trace and self.cut is None and self.cpu):
            return False
        from netvlad.numerics import deterministic

        return not deterministic()

    def _policy_chunk(self, shape: tuple[int, ...]) -> int:
        """The batch policy's images a call at input ``shape`` (3, H, W) and torch's thread count (measured on
        synthetic images the first time on this machine, then read from the cache)."""
        import torch

        from netvlad.extract.batch_policy import CANDIDATES, chunk_for, measure, policy_key

        threads = torch.get_num_threads()
        if (shape, threads) not in self._chunks:
            key = policy_key(self.model.config, {"fold": self.fold, "channels_last": self.channels_last}, shape,
                             threads)
            def timings() -> dict[int, float]:  # only where nothing is cached and the policy measures
                images = torch.rand(max(CANDIDATES), *shape, generator=torch.Generator().manual_seed(0))
                return measure(self._call, images)

            with torch.inference_mode():
                self._chunks[shape, threads] = chunk_for(key, timings)
        return self._chunks[shape, threads]

    @property
    def step(self) -> int | None:
        """Images per model call: the chunk on a CPU; None on another device (a batch in one call)."""
        return (self.chunk or TORCH_CPU_IMAGES) if self.cpu else None

    def step_for(self, shape: tuple[int, ...]) -> int | None:
        """Images per model call at input ``shape`` (3, H, W): :attr:`step`, or the batch policy's chunk (which a
        first call at the shape may measure)."""
        return self._policy_chunk(tuple(shape)) if self._policed() else self.step

    def padded(self) -> Runner:
        """This runner with ``pad``: every CPU call holds one chunk's number of images (:func:`in_chunks`; nothing to
        pad at the default one image a call), so that a row's bytes do not depend on the batch it arrived in (stores:
        a repaired row equals the undamaged one), traced whatever the number of images (the trace and the eager copy
        round differently). What extraction runs. The batch policy's chunks are never padded: its full chunks run
        whole, the images left over one a call (rows within 1e-5 of one a call, docs/engine.md)."""
        twin = copy.copy(self)
        twin.pad = twin.trace = True  # traced whatever the count: every extraction at a shape runs one code
        return twin

    def traced(self) -> Runner:
        """This runner traced whatever the number of images (one frame a call, unpadded): a streamed frame is
        described by the graph extraction's rows come from, not the eager copy (the two round differently)."""
        twin = copy.copy(self)
        twin.trace = True
        return twin

    def with_local(self, cut: int) -> Runner:
        """This runner (traced) returning (descriptors ``(B, D)``, feature maps ``(B, C, h, w)`` of the first
        ``cut`` backbone stages): the global descriptor and the local features of one pass, the descriptor from
        the same folded graph as without ``cut``."""
        twin = self.traced()
        twin.cut, twin._local = int(cut), None
        return twin

    def _module(self):
        """The module this runner's calls compute, before any folding or tracing: the model, or with ``cut`` the
        model returning its local feature maps too (:class:`~netvlad.models.global_and_local.GlobalAndLocal`, built
        at the first call and kept)."""
        if self.cut is None:
            return self.model
        if self._local is None:
            from netvlad.models.global_and_local import GlobalAndLocal

            self._local = GlobalAndLocal(self.model, self.cut)
        return self._local

    def inference_model(self, shape: tuple[int, ...] | None = None, example: torch.Tensor | None = None):
        """What the CPU runs on inputs of ``shape`` (B, 3, H, W): the folded channels_last copy of the model, made
        again when its tensors changed, with ``trace`` its graph traced and frozen at that shape (``example``: an
        input of it; the first :data:`TRACED_SHAPES` shapes); the model itself while one of its modules trains
        (folding holds for eval batch norms only)."""
        import torch

        if not (self.fold or self.channels_last or self.trace) or any(m.training for m in self.model.modules()):
            return self._module()
        tensors = (*self.model.parameters(), *self.model.buffers())
        versions = tuple((id(t), t._version) for t in tensors)
        kept = _PREPARED.setdefault(self.model, {})
        key = (self.fold, self.channels_last, self.cut)
        if key not in kept or kept[key][0] != versions:
            from netvlad.models.folding import fold_batch_norms

            model = self._module()
            prepared = fold_batch_norms(model) if self.fold else copy.deepcopy(model)
            if self.channels_last:
                prepared = prepared.to(memory_format=torch.channels_last)
            kept[key] = (versions, prepared, {})
        prepared, traced = kept[key][1], kept[key][2]
        if not self.trace or shape is None or example is None:
            return prepared
        if shape not in traced:  # traced at first sight, so that every call at a shape runs the same code
            from netvlad.models.tracing import traced_for_inference

            traced[shape] = traced_for_inference(prepared, example) if len(traced) < TRACED_SHAPES else None
        return traced[shape] or prepared


def _kept(memo: OrderedDict, key, make):
    """``memo[key]``, made by ``make()`` when missing; the :data:`_KEEP` most recently used entries stay."""
    if key in memo:
        memo.move_to_end(key)
        return memo[key]
    memo[key] = value = make()
    while len(memo) > _KEEP:
        memo.popitem(last=False)
    return value


def _numpy(out):
    """A model's output (a tensor, or a tuple of them) as float32 numpy arrays on the CPU."""
    if isinstance(out, tuple):
        return tuple(o.float().cpu().numpy() for o in out)
    return out.float().cpu().numpy()


class OrtRunner:
    """The model's checked ONNX export in an onnxruntime session (one per size when the model is not dynamic); on
    a CPU a batch runs in chunks of ``chunk`` images (None: :data:`ORT_CPU_IMAGES`). Float images in [0, 1] go to
    the float export; uint8 images (the decoded bytes) to an export that converts them itself, made on first use
    (at once with ``config.uint8``, which asks extraction to decode to uint8)."""

    name = "onnxruntime"
    cut: int | None = None  # with_local: the backbone stages whose feature maps each call returns too

    def __init__(self, model: PlaceModel, config: EngineConfig, providers: list,
                 fingerprint: str | None = None, chunk: int | None = None, pad: bool = False) -> None:
        import torch

        _refuse_lanes_with_chunk(config.lanes, chunk)
        self.model, self.config, self.providers, self.chunk, self.pad = model, config, providers, chunk, pad
        self.uint8 = config.uint8
        self.cpu = providers == ["CPUExecutionProvider"]
        self.threads = config.threads or torch.get_num_threads()
        self.lanes = (config.lanes or self.threads) if self.cpu and (chunk or ORT_CPU_IMAGES) == 1 else 1
        self.fingerprint = fingerprint or model.fingerprint()  # given by a caller that has just computed it
        pre = model.config.preprocessing
        self.fixed = tuple(pre.size) if pre.resize == "fixed" else None
        self.dynamic = self.fixed is None
        if self.dynamic:
            try:
                self._session(None, self.uint8)
            except ExportError as error:  # traced shapes: one export per image size, if that works
                self.dynamic = False
                try:
                    self._session(CHECK_SIZES[0], self.uint8)
                except ExportError:
                    raise error from None
                logger.info("the model's export is not size-independent (%s); exporting once per image size", error)
        else:
            self._session(self.fixed, self.uint8)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        import numpy as np
        import torch

        uint8 = images.dtype == torch.uint8
        session = self._session(None if self.dynamic else tuple(images.shape[2:]), uint8)
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.uint8 if uint8 else np.float32)

        def run(chunk: np.ndarray):
            out = session.run(None, {"images": chunk})
            return out[0] if self.cut is None else tuple(out)

        if not self.cpu:
            return run(array)
        return in_chunks(run, array, self.chunk or ORT_CPU_IMAGES, self.pad)

    padded = TorchRunner.padded

    def with_local(self, cut: int) -> OrtRunner:
        """This runner on float images returning (descriptors ``(B, D)``, feature maps ``(B, C, h, w)`` of the first
        ``cut`` backbone stages) from one pass of one graph: an export of its own (cached beside the plain one),
        checked against torch on both outputs before first use; :class:`ExportError` when it cannot be."""
        twin = copy.copy(self)
        twin.cut, twin.uint8 = int(cut), False
        twin._session(None if self.dynamic else (self.fixed or CHECK_SIZES[0]))  # exported and checked now
        return twin

    def step_for(self, shape: tuple[int, ...]) -> int | None:
        """Images per session call at any input shape: :attr:`step`."""
        return self.step

    def lane(self) -> OrtRunner:
        """This runner on one thread: what each of ``lanes`` threads runs its images through (one image a call,
        so an image's bytes do not depend on which lane or batch it went through)."""
        twin = copy.copy(self)
        twin.threads, twin.lanes = 1, 1
        return twin

    @property
    def step(self) -> int | None:
        """Images per session call: the chunk on a CPU; None with another provider (a batch in one call)."""
        return (self.chunk or ORT_CPU_IMAGES) if self.cpu else None

    def _key(self, shape: tuple[int, int] | None, uint8: bool = False) -> ExportKey:
        from netvlad.extract.onnx_cache import ExportKey

        pre = self.model.config.preprocessing
        height, width = shape or CHECK_SIZES[0]
        return ExportKey(self.fingerprint, pre.resize, tuple(pre.size), height, width, shape is None, uint8, self.cut)

    def _session(self, shape: tuple[int, int] | None, uint8: bool = False):
        key = self._key(shape, uint8)
        memo = (key, self.threads, str(self.providers), self.config.persist, str(self.config.cache))
        with _SESSIONS_LOCK:  # lanes meeting a new size at once export it once
            return _kept(_SESSIONS, memo, lambda: self._load(key))

    def _load(self, key: ExportKey):
        from netvlad.extract.onnx_cache import cache_folder, cached_file, export_bytes, write_export

        folder = Path(self.config.cache) if self.config.cache is not None else cache_folder()
        found = cached_file(folder, key) if self.config.persist else None
        if found is not None:
            return self._open(str(found))
        try:
            if self.config.persist:
                return write_export(self.model, folder, key, lambda path: self._checked(str(path), key))
            unsaved = (key, str(self.providers))
            if unsaved in _UNSAVED:
                _UNSAVED.move_to_end(unsaved)
                return self._open(_UNSAVED[unsaved])
            source = export_bytes(self.model, key)
            session = self._checked(source, key)
            _kept(_UNSAVED, unsaved, lambda: source)
            return session
        except ExportError:
            raise
        except Exception as error:  # noqa: BLE001 - any exporter failure means: this model cannot go through ONNX
            raise ExportError(f"torch.onnx.export failed: {type(error).__name__}: {error}".split("\n")[0]) from error

    def _checked(self, source, key: ExportKey):
        session = self._open(source)
        self._check(session, key)
        return session

    def _open(self, source):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # idle workers sleep instead of spinning, leaving the cores to the image decoding that runs beside them
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # work handed out in small blocks as threads ask for it, not in one share per thread: when the decoding
        # thread takes a core, the other worker carries on with the blocks left instead of waiting for its twin
        options.add_session_config_entry("session.dynamic_block_base", str(DYNAMIC_BLOCK_BASE))
        return onnxruntime.InferenceSession(source, options, providers=self.providers)

    def _check(self, session, key: ExportKey) -> None:
        """Refuse an export whose descriptors differ from torch's on random images (batch 2) of its sizes (uint8:
        random bytes, torch given them divided by 255) by more than :data:`CHECK_TOLERANCE`; with ``key.cut``, also
        one whose feature maps differ by more than that relative to their scale
        (:func:`~netvlad.models.tracing.relative_difference`: unnormalised maps reach 6 and more)."""
        import numpy as np
        import torch

        from netvlad.models.global_and_local import GlobalAndLocal
        from netvlad.models.tracing import relative_difference

        module = self.model if key.cut is None else GlobalAndLocal(self.model, key.cut)
        sizes = CHECK_SIZES if key.dynamic else ((key.height, key.width),)
        generator = torch.Generator().manual_seed(0)
        for height, width in sizes:
            images = (torch.randint(0, 256, (2, 3, height, width), generator=generator, dtype=torch.uint8)
                      if key.uint8 else torch.rand(2, 3, height, width, generator=generator))
            floats = images.float() / 255.0 if key.uint8 else images
            with torch.inference_mode():
                expected = module(floats.to(next(self.model.parameters()).device))
            expected = [e.float().cpu() for e in (expected if isinstance(expected, tuple) else (expected,))]
            got = [torch.from_numpy(g) for g in session.run(None, {"images": images.numpy()})]
            same = len(got) == len(expected) and all(g.shape == e.shape for g, e in zip(got, expected, strict=False))
            difference = float(np.abs(got[0].numpy() - expected[0].numpy()).max()) if same else float("inf")
            if not difference <= CHECK_TOLERANCE:
                raise ExportError(f"onnxruntime differs from torch by {difference:.2g} on {height}×{width} images")
            if key.cut is not None and not (local := relative_difference(got[1], expected[1])) <= CHECK_TOLERANCE:
                raise ExportError(f"onnxruntime's feature maps differ from torch's by {local:.2g} of their scale on "
                                  f"{height}×{width} images")


def _providers(device: torch.device, explicit: bool) -> list | None:
    """onnxruntime's providers for ``device``; None where it cannot run there (auto) or an error (explicit)."""
    import onnxruntime

    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    if explicit:
        raise BadInputError(f"engine onnxruntime cannot run on {device}: this onnxruntime has no "
                            f"{'CUDA' if device.type == 'cuda' else device.type} provider (install onnxruntime-gpu "
                            "for CUDA); use the cpu device or the torch engine", hint="--device cpu or --engine torch")
    return None


Runner = TorchRunner | OrtRunner
Engine = str | EngineConfig | Runner  # what extraction functions take as ``engine=``


def make_runner(model: PlaceModel, engine: Engine = LIBRARY_ENGINE, device: torch.device | str = "cpu",
                amp: str | None = "bf16", images: int | None = None, fingerprint: str | None = None) -> Runner:
    """The callable that extraction feeds image batches to (``.name`` says which engine it is); a runner already
    made for ``model`` is returned as it is (resolve once, extract many times). ``auto`` keeps torch for fewer
    than :data:`AUTO_MIN_IMAGES` ``images`` and for backbones outside ``AUTO_ONNX_BACKBONES`` (not measured faster);
    torch traces its CPU model for :data:`TRACE_MIN_IMAGES` ``images`` or more (or an unknown count), and from
    :data:`POLICY_MIN_IMAGES` images runs its CPU batches by the measured batch policy (``config.chunk`` unset).
    ``fingerprint``: ``model.fingerprint()`` where the caller has it (a SHA-256 of every tensor, ≈ 13 ms)."""
    if isinstance(engine, TorchRunner | OrtRunner):
        return engine
    config = engine if isinstance(engine, EngineConfig) else EngineConfig(name=engine)
    ENGINES.get(config.name)  # an unknown name: one line listing the engines
    import torch

    device = torch.device(device)
    trace = images is None or images >= TRACE_MIN_IMAGES

    def torch_runner() -> TorchRunner:
        return TorchRunner(model, device, amp, trace=trace, chunk=config.chunk,
                           policy=images is not None and images >= POLICY_MIN_IMAGES)

    if config.name == "torch" or (config.name == "auto" and (
            (images is not None and images < AUTO_MIN_IMAGES) or model.config.backbone not in AUTO_ONNX_BACKBONES)):
        return torch_runner()
    explicit = config.name == "onnxruntime"
    try:
        import onnxruntime  # noqa: F401 - optional dependency (netvlad[export])
    except ImportError:
        if explicit:
            raise BadInputError(f"engine onnxruntime needs onnxruntime, which is not installed: {ONNX_EXTRA}",
                                hint="or --engine torch") from None
        logger.info("onnxruntime is not installed (%s); extracting with torch", ONNX_EXTRA)
        return torch_runner()
    providers = _providers(device, explicit)
    if providers is None:
        return torch_runner()
    if device.type != "cpu":  # export from a CPU copy (the same fingerprint): the caller's model stays on its device
        model = _cpu_copy(model)
    try:
        return OrtRunner(model, config, providers, fingerprint, chunk=config.chunk)
    except ExportError as error:
        if explicit:
            raise BadInputError(f"engine onnxruntime cannot run this model: {error}", hint="--engine torch") from None
        logger.info("this model cannot run through onnxruntime (%s); extracting with torch", error)
        return torch_runner()


def local_runner(model: PlaceModel, engine: Engine = LIBRARY_ENGINE, cut: int | None = None,
                 images: int | None = None) -> Runner:
    """The padded CPU runner whose calls return (descriptors ``(B, D)``, feature maps ``(B, C, h, w)`` of the first
    ``cut`` backbone stages, None: all of them) from one pass: where ``engine`` resolves to onnxruntime
    (:func:`make_runner`, ``images`` as it takes them), its export with the feature maps as a second output
    (:meth:`OrtRunner.with_local`; its threads and lanes); else, or when ``auto`` resolved to onnxruntime and that
    export is refused (said in one info line), torch's folded, traced graph (:meth:`TorchRunner.with_local`). The
    descriptors are the ones the same engine's plain runner computes (within 1e-5). A named onnxruntime whose export
    with the feature maps is refused raises :class:`ExportError` (torch's descriptors would not be the ones asked
    for: the caller describes with onnxruntime and takes the feature maps elsewhere)."""
    import torch

    cut = len(model.backbone.stages) if cut is None else int(cut)
    run = make_runner(model, engine, "cpu", images=images)
    if isinstance(run, OrtRunner) and run.cpu:
        try:
            return run.padded().with_local(cut)
        except ExportError as error:
            if run.config.name == "onnxruntime":
                raise
            logger.info("the model's export with its feature maps cannot be used (%s); descriptors and feature maps "
                        "by torch", error)
    return TorchRunner(model, torch.device("cpu")).padded().with_local(cut)


def _cpu_copy(model: PlaceModel) -> PlaceModel:
    return copy.deepcopy(model).cpu().eval()

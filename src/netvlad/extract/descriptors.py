"""Descriptor extraction: images -> global descriptors, batched through a DataLoader, in memory or on disk."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from netvlad.data.images import (
    SKIP_HINT,
    ImageDataset,
    ImageDecodeError,
    ImageLoader,
    collate_by_size,
    load_image,
    stack_images,
)
from netvlad.data.prefetch import ordered_map
from netvlad.data.prefetch import prefetch as prefetch_items
from netvlad.errors import BadInputError
from netvlad.extract.engine import LIBRARY_ENGINE, Engine, Runner, join_outputs, make_runner
from netvlad.extract.row_buffer import RowBuffer
from netvlad.extract.store import DescriptorStore, Shard
from netvlad.models import PlaceModel
from netvlad.parallel import DistInfo, raise_together

logger = logging.getLogger(__name__)

# batches decoded ahead in a background thread while the model runs (images held: this times the batch size)
PREFETCH_BATCHES = 2
# but at least this many images: a deeper queue lets the thread bank decoded images whenever a core is free
PREFETCH_MIN_IMAGES = 8


def _dataset(model: PlaceModel, paths: Sequence[Path], uint8: bool = False) -> ImageDataset:
    """The images as ``model`` takes them (``uint8``: their bytes, for a runner that converts them itself); an
    undecodable one comes as None (the caller decides)."""
    pre = model.config.preprocessing
    return ImageDataset(paths, pre.resize, pre.size, True, pre.fast_decode, uint8)


def _loader(model: PlaceModel, paths: Sequence[Path], batch_size: int, workers: int, device: torch.device,
            uint8: bool = False):
    """The DataLoader that decodes in ``workers`` processes (or pins memory for CUDA): batches of images grouped by
    size (:func:`collate_by_size`)."""
    return ImageLoader(_dataset(model, paths, uint8), batch_size=batch_size, num_workers=workers,
                       collate_fn=collate_by_size, pin_memory=device.type == "cuda", persistent_workers=False)


def _streamed(run: Runner, items: Iterable[tuple[int, torch.Tensor | None]], batch_size: int
              ) -> Iterator[tuple[list[tuple[np.ndarray, np.ndarray]], list[int]]]:
    """Decoded ``(index, image or None)`` items in, per ``batch_size`` items out ``([(indices, descriptors)] per
    image size in order of first appearance, undecodable indices)``: the same model calls on the same images as
    :func:`collate_by_size` batches given to ``run`` (chunks of ``run.step_for(size)`` same-size images, a short
    one at a batch's end), but each chunk runs as soon as its images are decoded, so a batch's first images are in
    the model while its last ones are still being decoded (without it, a batch of 8 waits for 8 decodes first)."""
    steps: dict[tuple[int, ...], int] = {}  # per image size: the runner's images a call there
    groups: dict[tuple[int, ...], tuple[list[int], list[torch.Tensor], list]] = {}
    bad: list[int] = []
    count = 0
    for index, image in items:
        if image is None:
            bad.append(index)
        else:
            shape = tuple(image.shape)
            indices, waiting, outputs = groups.setdefault(shape, ([], [], []))
            indices.append(index)
            waiting.append(image)
            if shape not in steps:
                steps[shape] = run.step_for(shape) or batch_size
            if len(waiting) == steps[shape]:
                outputs.append(run(stack_images(waiting)))
                waiting.clear()
        count += 1
        if count == batch_size:
            yield _finish(run, groups), bad
            groups, bad, count = {}, [], 0
    if count:
        yield _finish(run, groups), bad


def in_lanes(run: Runner, dataset: ImageDataset, batch_size: int, ahead: int
              ) -> Iterator[tuple[list[tuple[np.ndarray, np.ndarray]], list[int]]]:
    """As :func:`_streamed`, but ``run.lanes`` threads each decode an image and run it through ``run.lane()``
    (one image a call, as :func:`_streamed` calls a runner of step 1), so images share the cores instead of one
    image's loops: the same batches, groups and order. A runner returning (descriptors, feature maps) gives each
    group's pair joined (:func:`~netvlad.extract.engine.join_outputs`)."""
    lane = run.lane()

    def describe(index: int) -> tuple[int, tuple[int, ...] | None, np.ndarray | None]:
        index, image = dataset[index]
        return (index, None, None) if image is None else (index, tuple(image.shape), lane(image[None]))

    with contextlib.closing(ordered_map(describe, range(len(dataset)), run.lanes, ahead)) as described:
        for first in range(0, len(dataset), batch_size):
            groups: dict[tuple[int, ...], tuple[list[int], list[np.ndarray]]] = {}
            bad = []
            for index, shape, descriptor in (next(described) for _ in range(min(batch_size, len(dataset) - first))):
                if shape is None:
                    bad.append(index)
                else:
                    indices, rows = groups.setdefault(shape, ([], []))
                    indices.append(index)
                    rows.append(descriptor)
            yield [(np.asarray(indices, dtype=np.int64), join_outputs(rows)) for indices, rows in groups.values()], bad


def _finish(run: Runner, groups: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run each group's waiting images and join its outputs: ``[(indices, descriptors)]``."""
    done = []
    for indices, waiting, outputs in groups.values():
        if waiting:
            outputs.append(run(stack_images(waiting)))
        done.append((np.asarray(indices, dtype=np.int64), join_outputs(outputs)))
    return done


def _on_device(model: PlaceModel, device: torch.device) -> PlaceModel:
    """``model`` in eval mode on ``device``: moved only when a tensor is elsewhere, switched only when a module is
    training (``.to`` and ``.eval`` call every one of MobileNetV2's 213 modules: ≈ 3 ms a call, checking ≈ 1)."""
    if any(t.device != device for t in (*model.parameters(), *model.buffers())):
        model = model.to(device)
    if any(module.training for module in model.modules()):
        model.eval()
    return model


def iter_descriptors(model: PlaceModel, paths: Sequence[Path | str], batch_size: int = 8, workers: int = 0,
                     device: torch.device | str = "cpu", progress: bool = False, desc: str = "extract",
                     amp: str | None = "bf16", engine: Engine = LIBRARY_ENGINE, prefetch: int = PREFETCH_BATCHES
                     ) -> Iterator[tuple[np.ndarray, np.ndarray | None, list[int]]]:
    """Yield ``(indices, descriptors (b, dim) float32, undecodable indices)`` over ``paths``, in batches.

    ``engine``: torch, onnxruntime or auto (:func:`netvlad.extract.engine.make_runner`). On CUDA the torch forward
    runs channels_last under ``amp`` autocast (``"bf16"``, ``"fp16"`` or None).
    Indices are positions in ``paths``. Images are loaded ``batch_size`` at a time and same-size images go to the
    runner together, which runs it on a CPU one image a call (:data:`netvlad.extract.engine.TORCH_CPU_IMAGES`), so
    that an image gets the same bytes whatever batch it arrives in; torch, for
    :data:`~netvlad.extract.engine.POLICY_MIN_IMAGES` paths or more on two threads or more, in full chunks of 8
    where the measured batch policy finds them faster (:mod:`netvlad.extract.batch_policy`; the rows then within
    1e-5 of one a call). On a CPU without ``workers``, a thread decodes
    up to ``prefetch`` batches' images (at least :data:`PREFETCH_MIN_IMAGES`) ahead while the model runs (0: none),
    and each image goes to the model as soon as it is decoded, not when its whole batch is. A runner that takes
    uint8 images (``EngineConfig(uint8=True)``) is given the decoded bytes; one with lanes (``EngineConfig(lanes=2)``)
    has that many threads each decode an image and run it.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> from netvlad.models import ModelConfig
        >>> model = PlaceModel(ModelConfig(num_clusters=4, preprocessing={"resize": "none"})).eval()
        >>> for indices, descriptors, undecodable in iter_descriptors(model, city.queries.paths()[:3], batch_size=2):
        ...     print(indices, descriptors.shape, undecodable)  # K·D = 4 · 1280 dimensions
        [0 1] (2, 5120) []
        [2] (1, 5120) []
    """
    device = torch.device(device)
    paths = [Path(p) for p in paths]
    model = _on_device(model, device)
    # padded: a row's bytes do not depend on the batch it arrives in (a repaired store row equals the undamaged one)
    run = make_runner(model, engine, device, amp, images=len(paths)).padded()
    logger.debug("%s: %d images through %s", desc, len(paths), run.name)
    batches = -(-len(paths) // batch_size)
    ahead = max(prefetch * batch_size, PREFETCH_MIN_IMAGES) if prefetch else 0
    if workers == 0 and device.type != "cuda" and ahead and run.lanes > 1:  # images decoded and run side by side
        results = in_lanes(run, _dataset(model, paths, run.uint8), batch_size, ahead)
    elif workers == 0 and device.type != "cuda":  # decoded ahead by a thread, each image run once decoded
        dataset = _dataset(model, paths, run.uint8)
        images = prefetch_items((dataset[i] for i in range(len(dataset))), ahead)
        results = _streamed(run, images, batch_size)
    else:
        results = (([(indices.numpy(), run(images)) for indices, images in groups], bad)
                   for groups, bad in _loader(model, paths, batch_size, workers, device, run.uint8))
    for groups, bad in tqdm(results, desc=desc, total=batches, disable=not progress, unit="batch"):
        for indices, descriptors in groups:
            yield indices, descriptors, bad
            bad = []
        if bad:
            yield np.empty(0, dtype=np.int64), None, bad


def extract_descriptors(
    model: PlaceModel,
    paths: Sequence[Path | str],
    batch_size: int = 8,
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "extract",
    engine: Engine = LIBRARY_ENGINE,
    prefetch: int = PREFETCH_BATCHES,
) -> np.ndarray:
    """Global descriptors ``(N, output_dim)`` float32 of the images at ``paths``, in the model's preprocessing.

    An undecodable image stops with an :class:`ImageDecodeError` naming it. ``prefetch``: as :func:`iter_descriptors`.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> from netvlad.models import ModelConfig
        >>> gem = PlaceModel(ModelConfig(pool="gem", preprocessing={"resize": "none"})).eval()
        >>> descriptors = extract_descriptors(gem, city.database.paths())  # street views of 64 × 48 pixels
        >>> descriptors.shape, descriptors.dtype, bool(np.allclose(np.linalg.norm(descriptors, axis=1), 1))
        ((20, 1280), dtype('float32'), True)
    """
    out = np.zeros((len(paths), model.output_dim), dtype=np.float32)
    with contextlib.closing(iter_descriptors(model, paths, batch_size, workers, device, progress, desc,
                                             engine=engine, prefetch=prefetch)) as batches:
        for indices, descriptors, bad in batches:
            if bad:
                raise_decode_error(Path(paths[bad[0]]), "")
            if descriptors is not None:
                out[indices] = descriptors
    return out


def extract_to_store(
    model: PlaceModel,
    root: Path | str,
    names: Sequence[str],
    folder: Path | str,
    *,
    dtype: str = "float32",
    skip_bad: bool = False,
    batch_size: int = 8,
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "extract",
    on_batch: Callable[[int], None] | None = None,
    shard: Shard | None = None,
    group: DistInfo | None = None,
    engine: Engine = LIBRARY_ENGINE,
) -> DescriptorStore:
    """Extract descriptors of ``root/name`` into the store at ``folder``, continuing where a previous run stopped.

    An undecodable image is marked and skipped with ``skip_bad``; otherwise extraction stops with an
    :class:`ImageDecodeError` naming it, keeping every descriptor written so far. Rows are written and synced in
    groups, about once a second (:class:`netvlad.extract.row_buffer.RowBuffer`), and on any exit; ``on_batch(n)`` is
    called after each batch of ``n`` descriptors is computed.

    Several processes fill one store: under torchrun pass ``group`` (every rank calls this; rank 0 creates the
    store, each rank extracts its :class:`Shard` of the rows, and all return once every row is written), or run
    independent jobs with ``shard`` (e.g. ``Shard(2, 8)``; each returns when its own rows are written). ``folder``
    must be on a filesystem every process sees. ``engine``: as :func:`iter_descriptors` (each rank runs its own).

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> from netvlad.models import ModelConfig
        >>> model = PlaceModel(ModelConfig(pool="max", preprocessing={"resize": "none"})).eval()
        >>> images = city.database
        >>> store = extract_to_store(model, images.root, images.names, "store")
        >>> store.complete, store.num_done, store.dim
        (True, 20, 1280)
        >>> store = extract_to_store(model, images.root, images.names, "store")  # a second run has nothing to do
        >>> np.array_equal(store.load(), extract_descriptors(model, images.paths()))
        True
    """
    group = group or DistInfo()
    if group.active and shard is not None and shard.count > 1:
        raise BadInputError(f"{folder}: pass either shard= (independent jobs) or a process group (torchrun), not both")
    shard = Shard(group.rank, group.world) if group.active else (shard or Shard())
    meta = dict(names=names, dim=model.output_dim, dtype=dtype, fingerprint=model.fingerprint(),
                root=str(Path(root).expanduser().resolve()),
                shards=shard.count)
    store, error = None, None
    try:
        if group.is_main:  # alone, or rank 0 of a group: the others wait, then open what it made
            store = DescriptorStore.create(folder, **meta)
    except Exception as caught:  # noqa: BLE001 - re-raised on this rank by raise_together
        error = caught
    raise_together(error, group, f"creating the store {folder}")
    try:
        if store is None:
            store = _open_on_rank(Path(folder), group, meta)
        store.check_plan(shard)
        _extract_rows(model, Path(root), store, store.pending_in(shard), skip_bad, batch_size, workers, device,
                      progress, desc, on_batch, engine)
    except Exception as caught:  # noqa: BLE001 - re-raised on this rank by raise_together
        error = caught
    raise_together(error, group, f"extracting into {folder}")
    return store


def _open_on_rank(folder: Path, group: DistInfo, meta: dict) -> DescriptorStore:
    """The store rank 0 created, opened by another rank; a clear error when this machine cannot see it."""
    if not (folder / "store.json").is_file():
        raise BadInputError(f"{folder}: rank {group.rank} cannot see the store that rank 0 created; the folder must "
                            "be on a filesystem shared by every process (and node)", path=folder)
    return DescriptorStore.create(folder, **meta)


def _extract_rows(model: PlaceModel, root: Path, store: DescriptorStore, todo: np.ndarray, skip_bad: bool,
                  batch_size: int, workers: int, device, progress: bool, desc: str,
                  on_batch: Callable[[int], None] | None, engine: Engine = LIBRARY_ENGINE) -> None:
    """Extract rows ``todo`` of ``store`` (images ``root/name``), writing and marking them batch by batch."""
    if len(todo) == 0:
        logger.info("%s: all %d descriptors of this process already extracted", store.folder, len(store))
        return
    paths = [root / store.names[i] for i in todo]
    run = make_runner(_on_device(model, torch.device(device)), engine, device, images=len(paths),
                      fingerprint=store.fingerprint)  # the store's, just computed: not hashed again for an export
    batches = iter_descriptors(model, paths, batch_size, workers, device, progress, desc, engine=run)
    # one write per second (syncing while the next images run)
    with RowBuffer(store, background=True) as rows, contextlib.closing(batches):
        for local, descriptors, bad in batches:
            if bad:
                rows.flush()
                if not skip_bad:
                    raise_decode_error(paths[bad[0]], f"; {store.num_done} of {len(store)} descriptors kept in "
                                                       f"{store.folder}, a new run continues from there")
                for i in bad:
                    logger.warning("skipping undecodable image %s", paths[i])
                store.mark_bad(todo[np.asarray(bad)])
            if descriptors is not None and len(local):
                rows.add(todo[local], descriptors)
                if on_batch is not None:
                    on_batch(len(local))


def raise_decode_error(path: Path, tail: str) -> None:
    """Re-decode ``path`` in this process for the exact reason, and raise it with ``tail`` appended."""
    try:
        load_image(path)
        reason = f"{path}: cannot decode image; fix or remove it, or pass skip_bad=True"
    except ImageDecodeError as error:  # its message already names the file and skip_bad=True
        reason = str(error)
    except FileNotFoundError as error:
        reason = f"{error}; fix or remove it, or pass skip_bad=True"
    raise ImageDecodeError(reason + tail, path=path, hint=SKIP_HINT, skippable=True)

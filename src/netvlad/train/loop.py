"""The training loop: cluster init, cache refresh + mining, SGD/Adam steps, validation, kept checkpoint, resume."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from netvlad.data.dataset import GeoDataset
from netvlad.data.provenance import PROVENANCE_KEY, Provenance
from netvlad.extract.clusters import initialize_clusters
from netvlad.extract.engine import EngineConfig
from netvlad.models import PlaceModel, load, save_model
from netvlad.train import checkpoint
from netvlad.train.cache import ExtractOptions, build_cache
from netvlad.train.checkpoint import BEST_FILE, LAST_FILE, NO_VALIDATION, RunState
from netvlad.train.distributed import DistInfo, all_sum, barrier, init_distributed, shutdown
from netvlad.train.frozen import FrozenFeatures, compute_frozen
from netvlad.train.logs import RunLog
from netvlad.train.optim import OPTIMIZERS, SCHEDULERS
from netvlad.train.refresh import MiningInputs, mine_chunk
from netvlad.train.sets import TrainingSet, exclude_ambiguous, holdout_last, prepare_training_set
from netvlad.train.step import GroupEncoder, frozen_batchnorm_train, idle_loss, tuple_loss, use_channels_last
from netvlad.train.train_config import TrainConfig, write_config
from netvlad.train.validate import validate
from netvlad.train.whitening import fit_whitening

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Run:
    """The live objects of a training run (built once by :func:`train`)."""

    config: TrainConfig
    data: TrainingSet
    val: GeoDataset | None
    run_dir: Path
    model: PlaceModel
    encoder: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    info: DistInfo
    device: torch.device
    log: RunLog
    progress_bar: bool
    frozen: FrozenFeatures | None = None
    provenance: Provenance | None = None  # what the run trains and validates on, recorded in every checkpoint

    @property
    def extraction(self) -> ExtractOptions:
        """How the run extracts descriptors (cache, validation, whitening): its batch size, device, features."""
        return ExtractOptions(batch_size=self.config.batch_size, workers=self.config.workers, device=self.device,
                              progress=self.progress_bar and self.info.is_main, frozen=self.frozen,
                              engine=EngineConfig(self.config.engine, persist=False))  # new weights every refresh

    def keep(self, name: str, model: PlaceModel | None = None, **extra) -> Path:
        """Write ``model`` (default: the one training) to ``run_dir/name`` with ``extra`` and the provenance."""
        return save_model(self.model if model is None else model, self.run_dir / name,
                          extra={**extra, **provenance_extra(self.provenance)})

    def save(self, state: RunState) -> None:
        """Write the resumable state (main process only)."""
        if self.info.is_main:
            checkpoint.save_state(self.run_dir, state, self.model, self.optimizer, self.scheduler)


def provenance_extra(provenance: Provenance | None) -> dict:
    """``{"provenance": record}`` for a checkpoint's metadata (empty without one)."""
    return {} if provenance is None else {PROVENANCE_KEY: provenance.to_dict()}


def config_hash(config: TrainConfig) -> str:
    """16 hex digits identifying every option of ``config``."""
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def initial_model(config: TrainConfig, data: TrainingSet, device: torch.device, info: DistInfo, run_dir: Path,
                  fresh: bool, progress: bool, provenance: Provenance | None = None) -> PlaceModel:
    """The model to train: ``init_model``, or a new one with k-means-initialised clusters (skipped on resume)."""
    if config.init_model:
        return load(config.init_model).to(device)
    model = PlaceModel(config.model_config, pretrained=config.pretrained and fresh).to(device)
    if fresh:
        paths = data.dataset.database.paths()
        initialize_clusters(model, paths, config.cluster_config, device, progress and info.is_main,
                            config.batch_size, config.workers)
        if info.is_main:
            save_model(model, run_dir / "init.safetensors",
                       extra={"step": "k-means initialisation", **provenance_extra(provenance)})
    return model


def build_run(config: TrainConfig, dataset: GeoDataset, val: GeoDataset | None, run_dir: Path, device, resume: bool,
              progress: bool, provenance: Provenance | None = None) -> tuple[Run, RunState]:
    """Validate the data, build (or restore) model, optimiser, scheduler and run state."""
    device = torch.device(device)
    dataset = exclude_ambiguous(dataset, config.neg_radius, config.exclude_dark_below, config.exclude_duplicates_above)
    data = prepare_training_set(dataset, config.pos_radius, config.neg_radius,  # errors before any work
                                config.min_positive_distance)
    info = init_distributed(device)
    run_dir = Path(run_dir)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(config, run_dir / "config.yaml")
    torch.manual_seed(config.seed)
    model = initial_model(config, data, device, info, run_dir, not resume, progress, provenance)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = OPTIMIZERS[config.optimizer](params, config)
    scheduler = SCHEDULERS[config.scheduler](optimizer, config)
    if resume:  # before precomputing: the frozen stages' weights come from the state too
        state = checkpoint.load_state(run_dir, model, optimizer, scheduler)
    else:
        previous = np.full((len(dataset.queries), config.num_negatives), -1, dtype=np.int64)
        state = RunState(rng=np.random.default_rng(config.seed), previous=previous)
    done = state.epoch >= config.epochs  # resuming a finished run: nothing to train, skip the precompute
    frozen = None if done else precompute(config, model, dataset, val, info, device, progress)
    frozen_batchnorm_train(model)
    if config.channels_last:
        use_channels_last(model)
    encoder = GroupEncoder(model, frozen, config.channels_last)
    if info.active:
        encoder = DistributedDataParallel(encoder)
    log = RunLog(run_dir, enabled=info.is_main, tensorboard=config.tensorboard)
    if resume:
        log.event("resume", state.step, epoch=state.epoch, position=state.position, batch=state.batch)
    run = Run(config, data, val, run_dir, model, encoder, optimizer, scheduler, info, device, log, progress, frozen,
              provenance)
    return run, state


def precompute(config: TrainConfig, model: PlaceModel, dataset: GeoDataset, val: GeoDataset | None, info: DistInfo,
               device: torch.device, progress: bool) -> FrozenFeatures | None:
    """Frozen-stage features of every training and validation image, when ``precompute_frozen`` is set."""
    if not config.precompute_frozen:
        return None
    paths = [p for ds in (dataset, val) if ds is not None for side in (ds.database, ds.queries) for p in side.paths()]
    return compute_frozen(model, paths, info, config.batch_size, config.workers, device, progress and info.is_main)


def refresh_interval(run: Run) -> int:
    """Queries between cache refreshes: ``cache_refresh``, doubled each time the lr has halved."""
    current = run.optimizer.param_groups[0]["lr"]
    return max(1, round(run.config.cache_refresh * run.config.lr / current))


def cached_database(run: Run, chunk: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Database ids to cache: all, or ("partial") a random subset plus the chunk's potential positives."""
    count = len(run.data.dataset.database)
    if run.config.mining == "full" or run.config.partial_database >= count:
        return np.arange(count)
    sample = rng.choice(count, run.config.partial_database, replace=False)
    return np.union1d(sample, np.concatenate([run.data.positives[q] for q in chunk]))


def refresh_and_mine(run: Run, state: RunState, chunk: np.ndarray) -> None:
    """Refresh the descriptor cache for ``chunk``'s queries and mine their tuples into ``state``."""
    c, ds = run.config, run.data.dataset
    db_ids = cached_database(run, chunk, state.rng)
    db_paths, q_paths = ds.database.paths(), ds.queries.paths()
    paths = [db_paths[i] for i in db_ids] + [q_paths[q] for q in chunk]
    started = time.perf_counter()
    cache = build_cache(run.model, paths, run.info, run.extraction, dtype=c.cache_dtype,
                        memmap_path=run.run_dir / "cache" / "descriptors", memmap_mb=c.cache_memmap_mb)
    cached = time.perf_counter()
    inputs = MiningInputs([run.data.positives[q] for q in chunk], [run.data.non_negatives[q] for q in chunk],
                          state.previous[chunk], len(ds.database), c.margin, c.negative_samples, c.num_negatives)
    seeds = state.rng.integers(0, 2**63, size=len(chunk))  # one per query: ranks mine the same tuples
    tuples, previous = mine_chunk(cache, db_ids, inputs, seeds, run.info)
    state.previous[chunk] = previous
    state.tuples = dataclasses.replace(tuples, queries=chunk[tuples.queries])
    state.batch = 0
    frozen_batchnorm_train(run.model)
    run.log.event("mining", state.step, epoch=state.epoch, queries=len(chunk), tuples=len(tuples),
                  skipped=tuples.skipped, cached_database=len(db_ids), cache_bytes=int(cache.nbytes),
                  cache_seconds=round(cached - started, 3), mining_seconds=round(time.perf_counter() - cached, 3))


def train_batch(run: Run, state: RunState) -> float:
    """One optimiser step on the next ``batch_tuples`` tuples (split over ranks); returns the mean loss."""
    b, world = run.config.batch_tuples, run.info.world
    batch = state.tuples.take(slice(state.batch * b, (state.batch + 1) * b))
    mine_rows = np.arange(run.info.rank, len(batch), world)
    ds = run.data.dataset
    run.optimizer.zero_grad(set_to_none=True)
    if len(mine_rows):
        # DDP averages gradients over ranks: tuple_loss scales so the result is the global batch's loss.
        loss = tuple_loss(run.encoder, run.model, batch.take(mine_rows), ds.queries.paths(), ds.database.paths(),
                          run.config.margin, run.device, run.frozen, run.config.loss_normalization, len(batch),
                          run.info)
    else:
        loss = idle_loss(run.encoder, run.model, ds.queries.paths()[batch.queries[0]], run.device, run.frozen)
        if run.config.loss_normalization == "violating_mean":
            all_sum(0.0, run.info)  # the other ranks' tuple_loss counts violating triplets with an all-reduce
    value = all_sum(float(loss.detach()) / world, run.info)
    if not np.isfinite(value):
        raise RuntimeError(f"the loss became NaN/inf at epoch {state.epoch}, step {state.step}; the last good "
                           f"state {run.run_dir / checkpoint.STATE_FILE} is intact: resume with a lower lr")
    loss.backward()
    run.optimizer.step()
    state.batch += 1
    state.step += 1
    return value


def train_chunk(run: Run, state: RunState, bar: tqdm, queries: int) -> None:
    """Train on the current chunk's tuples from ``state.batch`` on, checkpointing as configured.

    The bar moves per batch, by the batch's share of the chunk's ``queries``.
    """
    batches = -(-len(state.tuples) // run.config.batch_tuples)
    while state.batch < batches:
        loss = train_batch(run, state)
        run.log.event("train", state.step, epoch=state.epoch, loss=loss)
        bar.set_postfix(loss=f"{loss:.4f}", tuples=len(state.tuples), skipped=state.tuples.skipped)
        bar.update(state.position + queries * state.batch // batches - bar.n)
        if state.batch % run.config.checkpoint_every == 0 and state.batch < batches:
            run.save(state)


def train_epoch(run: Run, state: RunState) -> None:
    """Train one epoch from wherever ``state`` stands (a fresh epoch, or mid-chunk after resume)."""
    if state.order is None:
        order = state.rng.permutation(run.data.query_ids)
        state.order, state.position = order[: run.config.epoch_queries or len(order)], 0
    bar = tqdm(total=len(state.order), initial=state.position, desc=f"epoch {state.epoch + 1}",
               unit="query", disable=not (run.progress_bar and run.info.is_main))
    while state.position < len(state.order):
        chunk_size = refresh_interval(run)
        if state.tuples is None:
            refresh_and_mine(run, state, state.order[state.position: state.position + chunk_size])
            run.save(state)
        done = min(chunk_size, len(state.order) - state.position)
        train_chunk(run, state, bar, done)
        state.position += done
        state.tuples = None
        bar.update(state.position - bar.n)
    bar.close()


def end_epoch(run: Run, state: RunState) -> None:
    """Validate, keep the epoch's checkpoint (best by Recall@5, or the last without validation), decay the lr, save."""
    state.epoch += 1
    recalls = validate_epoch(run, state.epoch)
    run.scheduler.step()
    state.order, state.tuples, state.position = None, None, 0
    record(run, state, recalls)


def validate_epoch(run: Run, epoch: int) -> dict[int, float]:
    """Validation Recall@1/5/10 (empty without a validation set), logged."""
    if run.val is None:
        return {}
    recalls = validate(run.model, run.val, run.info, run.extraction, radius=run.config.val_radius, ns=(1, 5, 10))
    frozen_batchnorm_train(run.model)
    run.log.event("validation", epoch, epoch=epoch, **{f"recall@{n}": r for n, r in recalls.items()})
    logger.info("epoch %d validation: %s", epoch, "  ".join(f"R@{n} {r:.1f}" for n, r in recalls.items()))
    return recalls




def record(run: Run, state: RunState, recalls: dict[int, float]) -> None:
    """Add the epoch to the history, keep its weights, save the state.

    With validation, ``best.safetensors`` is rewritten when Recall@5 improves; without, nothing chose an epoch, so
    ``last.safetensors`` holds the latest one.
    """
    state.history.append({"epoch": state.epoch, **{f"recall@{n}": r for n, r in recalls.items()}})
    if run.val is None:
        if run.info.is_main:
            run.keep(LAST_FILE, epoch=state.epoch, kept=NO_VALIDATION)
    elif recalls[5] > state.best_recall:
        state.best_recall, state.best_epoch = recalls[5], state.epoch
        if run.info.is_main:
            run.keep(BEST_FILE, epoch=state.epoch, recalls={str(n): r for n, r in recalls.items()})
    run.save(state)


def finish(run: Run, state: RunState) -> Path:
    """Load the kept weights (best by validation R@5, else the last epoch), fit PCA whitening if asked, and write
    ``model.safetensors``."""
    barrier(run.info)
    best = run.run_dir / BEST_FILE
    model = load(best).to(run.device) if run.val is not None and best.is_file() else run.model
    if run.config.whitening_dim:  # through the whole model, as evaluation describes images, whether or not this
        # process holds precomputed frozen features (a resumed finished run does not): the same whitening either way
        fit_whitening(model, run.data.dataset.database.paths(), run.config.whitening_dim, run.config.seed, run.info,
                      dataclasses.replace(run.extraction, frozen=None))
    out = run.run_dir / "model.safetensors"
    if run.val is None:
        kept = {"kept": NO_VALIDATION, "last_epoch": state.epoch}
        logger.info("kept the last epoch (%d): %s", state.epoch, NO_VALIDATION)
    else:
        kept = {"kept": "best validation Recall@5", "best_epoch": state.best_epoch,
                "best_recall_at_5": state.best_recall}
        logger.info("kept epoch %d: best validation R@5 %.1f", state.best_epoch, state.best_recall)
    if run.info.is_main:
        run.keep(out.name, model, **kept, history=state.history)
    run.log.event("done", state.step, **kept)
    run.log.close()
    return out


def train(config: TrainConfig, dataset: GeoDataset, run_dir: Path | str, val: GeoDataset | None = None,
          device: torch.device | str = "cpu", resume: bool = False, progress: bool = False) -> Path:
    """Train NetVLAD on ``dataset`` into ``run_dir``; returns the final checkpoint ``run_dir/model.safetensors``.

    ``resume`` continues exactly from ``run_dir/state.pt``. Without ``val``, ``config.val_places`` > 0 holds out
    the last places of ``dataset`` for validation. Under torchrun every rank calls this.

    Examples:
        >>> from netvlad.data import open_dataset, synthetic
        >>> from netvlad.models import load
        >>> from netvlad.train import TrainConfig
        >>> city = open_dataset(synthetic.generate_city(synthetic.CityConfig.preset("tiny"), "city"))  # 20 + 10 views
        >>> config = TrainConfig(pretrained=False, resize="fixed", size=(64, 64), num_clusters=4, epochs=1,
        ...                      cluster_images=10, negative_samples=6, num_negatives=3, batch_tuples=2,
        ...                      tensorboard=False, val_places=4)  # random weights, 64 × 64: a seconds-long run
        >>> checkpoint = train(config, city, "run")  # k-means, one epoch of mined triplets; the last 4 places validate
        >>> checkpoint.name, sorted(p.name for p in Path("run").glob("*.safetensors"))  # best: by validation R@5
        ('model.safetensors', ['best.safetensors', 'init.safetensors', 'model.safetensors'])
        >>> load(checkpoint).config.num_clusters, load(checkpoint).output_dim  # K = 4 clusters of 1280-D
        (4, 5120)
    """
    source = dataset
    if val is None and config.val_places:
        dataset, val = holdout_last(dataset, config.val_places)
    provenance = Provenance.of_training(source, dataset, val, config.seed, config_hash(config))
    run, state = build_run(config, dataset, val, Path(run_dir), device, resume, progress, provenance)
    try:
        if not resume:
            record(run, state, validate_epoch(run, 0))  # epoch 0: the k-means-initialised model
        while state.epoch < config.epochs:
            train_epoch(run, state)
            end_epoch(run, state)
        return finish(run, state)
    finally:
        shutdown(run.info)  # also after an error: gloo's threads end here, not in the interpreter's teardown

"""``netvlad demo`` as a chain of resumable steps: data → k-means clusters → training → evaluation (Recall@N of
five models, localisation of a few queries) → report.

Each step takes explicit inputs, writes its outputs under the demo folder and returns their paths (or what it
read back); a rerun skips a step whose outputs exist and were made from the same inputs (``force`` redoes all),
and training that died continues from its last state. Layout: ``city/`` (generated data), ``clusters/``,
``run/`` (training), ``evaluation/``, ``report/`` and ``steps/`` (each step's recorded inputs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from netvlad.data.conditions import query_conditions
from netvlad.eval import EvalResult
from netvlad.eval.plots import plot_recall, retrieval_picture
from netvlad.extract import fit_clusters
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, load, save_model
from netvlad.models.io import read_checkpoint
from netvlad.numerics import describe, numeric_environment
from netvlad.pipeline import report
from netvlad.pipeline.compare import Localisation, compare_models, localise_queries
from netvlad.pipeline.demo_config import DemoConfig
from netvlad.pipeline.results import load_localisations, load_results, save_localisations, save_results
from netvlad.pipeline.sources import DemoData, prepare_data
from netvlad.pipeline.steps import Step, Timer, array_digest, checkpoint_digest, dataset_digest
from netvlad.train import train
from netvlad.train.checkpoint import STATE_FILE

logger = logging.getLogger(__name__)

STEPS = ("data", "clusters", "training", "evaluation", "report")


@dataclass(frozen=True)
class Method:
    """One evaluated model: its label, whether it was trained, and its checkpoint (None: ImageNet + ``pool``)."""

    label: str
    trained: bool
    checkpoint: Path | None = None
    pool: str | None = None


@dataclass(frozen=True)
class Trained:
    """The checkpoints of the clusters and training steps."""

    kmeans: Path  # k-means-initialised NetVLAD (training's start)
    best: Path  # best epoch by validation Recall@5
    final: Path | None  # best epoch + PCA whitening (None without whitening)

    def methods(self) -> list[Method]:
        """The five compared models, off the shelf first."""
        methods = [Method("f_max (off-the-shelf)", False, pool="max"),
                   Method("GeM (off-the-shelf)", False, pool="gem"),
                   Method("NetVLAD k-means (off-the-shelf)", False, self.kmeans),
                   Method("NetVLAD trained", True, self.best)]
        if self.final is not None:
            methods.append(Method("NetVLAD trained + whitening", True, self.final))
        return methods


@dataclass(frozen=True)
class DemoResult:
    """What a demo run produced: the report folder, Recall@N per method, their table, and the run's seed."""

    report: Path
    results: dict[str, EvalResult]
    table: str
    seed: int
    threads: int


def off_the_shelf(pool: str, config: DemoConfig) -> PlaceModel:
    """ImageNet MobileNetV2 with ``pool`` (max or gem) at the demo's input size."""
    pre = Preprocessing(resize="fixed", size=config.size)
    return PlaceModel(ModelConfig(backbone="mobilenet_v2", pool=pool, preprocessing=pre), pretrained=True).eval()


def kernels() -> dict:
    """What of the numeric environment a step's outputs depend on (a step made under other kernels is redone)."""
    environment = numeric_environment()
    return {key: environment[key] for key in ("deterministic", "torch_cpu_capability", "torch_threads")}


def _skip(step: Step, outputs: Sequence[Path], force: bool) -> bool:
    if step.state(outputs, force) != "done":
        return False
    logger.info("step %s: outputs up to date (same inputs), skipped; force redoes it", step.name)
    return True


def cluster_step(config: DemoConfig, data: DemoData, out: Path, records: Path, *, device, progress: bool,
                 force: bool = False) -> Path:
    """k-means-initialised NetVLAD on the training database (the off-the-shelf NetVLAD row and training's start)
    -> ``out``, its checkpoint."""
    tc = config.train_config
    step = Step(records, "clusters", {"model": json.loads(tc.model_config.to_json()),
                                      "clusters": dataclasses.asdict(tc.cluster_config),
                                      "train": dataset_digest(data.train), "batch_size": config.batch_size,
                                      "kernels": kernels()})
    if _skip(step, [out], force):
        return out
    step.begin()
    model = PlaceModel(tc.model_config, pretrained=True).to(device)
    fit = fit_clusters(model, data.train.database.paths(), tc.cluster_config, device, progress, config.batch_size,
                       config.workers)
    save_model(model, out, extra={"step": "k-means initialisation", "kmeans_descriptors": fit.descriptors})
    step.end()
    return out


def train_step(config: DemoConfig, data: DemoData, init: Path, run_dir: Path, records: Path, *, device,
               progress: bool, force: bool = False) -> Trained:
    """Weakly supervised training from the k-means model into ``run_dir`` -> the best and whitened checkpoints.

    A run that died with the same inputs resumes from its state; one from other inputs is replaced.
    """
    tc = dataclasses.replace(config.train_config, init_model=str(init))
    if tc.whitening_dim and tc.whitening_dim >= len(data.train.database):
        tc = dataclasses.replace(tc, whitening_dim=len(data.train.database) - 1)
        logger.info("whitening to %d dims: the training database holds %d images", tc.whitening_dim,
                    len(data.train.database))
    outputs = Trained(init, run_dir / "best.safetensors", run_dir / "model.safetensors" if tc.whitening_dim else None)
    step = Step(records, "training", {"config": tc.to_dict(), "init": checkpoint_digest(init),
                                      "train": dataset_digest(data.train), "val": dataset_digest(data.val),
                                      "kernels": kernels()})
    state = step.state([outputs.best, run_dir / "model.safetensors"], force)
    if state == "done":
        logger.info("step training: outputs up to date (same inputs), skipped; force redoes it")
        return outputs
    resume = state == "started" and (run_dir / STATE_FILE).is_file()
    if not resume and run_dir.exists():
        logger.info("removing the previous training run in %s", run_dir)
        shutil.rmtree(run_dir)
    step.begin()
    logger.info("training%s: %d epochs of ≤ %s queries, cache refresh every %d queries, K=%d, %dx%d input, %s lr %g",
                " (resumed)" if resume else "", tc.epochs, tc.epoch_queries or "all", tc.cache_refresh,
                tc.num_clusters, *tc.size, tc.optimizer, tc.lr)
    train(tc, data.train, run_dir, val=data.val, device=device, resume=resume, progress=progress)
    step.end()
    return outputs


def evaluate_step(config: DemoConfig, data: DemoData, methods: Sequence[Method], out_dir: Path, records: Path, *,
                  device, progress: bool, force: bool = False) -> dict[str, EvalResult]:
    """Recall@N of every method on the test set -> saved in ``out_dir`` (read back when up to date)."""
    models = {m.label: checkpoint_digest(m.checkpoint) if m.checkpoint else m.pool for m in methods}
    step = Step(records, "evaluation", {"models": models, "test": dataset_digest(data.test), "radius": config.radius,
                                        "ns": config.ns, "size": config.size, "batch_size": config.batch_size,
                                        "kernels": kernels(), "engine": config.engine})
    if _skip(step, [out_dir / "results.json"], force):
        return load_results(out_dir)
    step.begin()
    loaded = {m.label: load(m.checkpoint) if m.checkpoint else off_the_shelf(m.pool, config) for m in methods}
    logger.info("evaluating %d models on %r (positives within %g m)", len(loaded), data.test, config.radius)
    results = compare_models(loaded, data.test, config.radius, config.ns, config.batch_size, config.workers, device,
                             progress, engine=config.engine)
    save_results(results, out_dir)
    step.end()
    return results


def localise_step(config: DemoConfig, data: DemoData, result: EvalResult, out: Path, records: Path, *,
                  force: bool = False) -> list[Localisation]:
    """Positions of ``config.localise`` sampled test queries from ``result``'s top matches -> ``out`` (JSON)."""
    step = Step(records, "localisation", {"result": array_digest(result.ranked, result.distances),
                                          "test": dataset_digest(data.test),
                                          "count": config.localise, "seed": config.seed})
    if _skip(step, [out], force):
        return load_localisations(out)
    step.begin()
    localised = localise_queries(result, data.test, config.localise, seed=config.seed)
    for item in localised:
        logger.info("localised %s: %.1f m from its recorded position (top-1 match %s)", item.query, item.error,
                    "correct" if item.correct else "wrong")
    save_localisations(localised, out)
    step.end()
    return localised


def picture_step(config: DemoConfig, data: DemoData, results: dict[str, EvalResult], methods: Sequence[Method],
                 run_dir: Path, folder: Path) -> dict[str, str]:
    """recall.png, training.png and retrieval pictures of the best trained and best off-the-shelf method into
    ``folder`` -> {method label: picture file name}. Cheap: always redrawn."""
    folder.mkdir(parents=True, exist_ok=True)
    plot_recall({label: r.recall for label, r in results.items()}, folder / "recall.png",
                title=f"{data.test.name}: Recall@N")
    report.plot_training(report.read_log(run_dir), folder / "training.png")
    first = config.ns[0]
    trained = next(m.label for m in methods if m.trained)
    best_other = max((m.label for m in methods if not m.trained), key=lambda label: results[label].recall[first])
    pictures = {trained: "retrievals_trained.jpg", best_other: "retrievals_off_the_shelf.jpg"}
    pictures = pictures if config.retrieval_queries else {}
    for label, name in pictures.items():
        retrieval_picture(results[label], data.test, folder / name, config.retrieval_queries, seed=config.seed,
                          radius=config.radius)
    return pictures


def run_demo(config: DemoConfig, out_dir: Path | str, device: torch.device | str = "cpu", progress: bool = False,
             force: bool = False) -> DemoResult:
    """Run (or continue) the demo in ``out_dir``; ``force`` redoes every step. Returns what it produced.

    Examples:
        >>> from netvlad.pipeline.demo_config import DemoConfig
        >>> result = run_demo(DemoConfig.preset("tiny"), "demo")  # what `netvlad demo --preset tiny` runs
        >>> for label, found in result.results.items():  # Recall@N per method on the city's test split
        ...     print(label, found.num_queries, found.num_database)
        f_max (off-the-shelf) 10 20
        GeM (off-the-shelf) 10 20
        NetVLAD k-means (off-the-shelf) 10 20
        NetVLAD trained 10 20
        NetVLAD trained + whitening 10 20
        >>> (result.report / "index.md").is_file(), result.seed  # the report a browser opens
        (True, 0)
        >>> run_demo(DemoConfig.preset("tiny"), "demo").table == result.table  # a rerun skips the finished steps
        True
    """
    out_dir, timer = Path(out_dir), Timer(STEPS)
    records, run_dir, folder = out_dir / "steps", out_dir / "run", out_dir / "report"
    logger.info("demo seed %d, %d torch threads, output %s", config.seed, torch.get_num_threads(), out_dir)
    with timer.step("data"):
        data = prepare_data(config, out_dir, progress, overwrite=force)
        logger.info("data: %s", data.source)
    flags = {"device": device, "progress": progress, "force": force}
    with timer.step("clusters"):
        init = cluster_step(config, data, out_dir / "clusters" / "kmeans.safetensors", records, **flags)
    with timer.step("training"):
        trained = train_step(config, data, init, run_dir, records, **flags)
    methods = trained.methods()
    with timer.step("evaluation"):
        results = evaluate_step(config, data, methods, out_dir / "evaluation", records, **flags)
        best = next(m.label for m in methods if m.trained)
        localised = localise_step(config, data, results[best], out_dir / "evaluation" / "localisation.json",
                                  records, force=force)
    with timer.step("report"):
        pictures = picture_step(config, data, results, methods, run_dir, folder)
    table = report.recall_table(results)
    numerics = numeric_environment()
    by_condition = report.conditions_by_method(results, query_conditions(data.test))
    report.write_results(folder / "results.json", results, localised, {
        "table": table, "data": data.source, "test_set": repr(data.test), "config": config.to_dict(),
        "seed": config.seed, "timings": timer.steps | {"total": timer.total()}, "run_dir": str(run_dir),
        "device": str(device), "torch_threads": torch.get_num_threads(), "numerics": numerics,
        "engine": config.engine}, by_condition)
    report.write_index(folder / "index.md", "NetVLAD demo report",
                       [*report.sections(config, data, results, localised, pictures, timer.steps,
                                         load(trained.final).output_dim if trained.final else None, by_condition,
                                         read_checkpoint(init, tensors=False)[2].get("kmeans_descriptors")),
                        ("Numerics", f"Seed {config.seed}; {describe(numerics)}.")])
    logger.debug("Recall@N on the test set:\n%s", table)  # the CLI prints it
    logger.info("demo finished in %.1f s (%.1f CPU s); report: %s", timer.total()["wall_s"],
                timer.total()["cpu_s"], folder / "index.md")
    return DemoResult(folder, results, table, config.seed, torch.get_num_threads())

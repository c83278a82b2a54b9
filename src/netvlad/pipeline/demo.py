"""``netvlad demo``, step by step: data → k-means clusters → training → evaluation against off-the-shelf → report.

Each step logs what it does and how long it took; the report folder is the result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from netvlad.eval.plots import plot_recall, retrieval_picture
from netvlad.models import ModelConfig, PlaceModel, Preprocessing, load, save_model
from netvlad.pipeline import report
from netvlad.pipeline.compare import compare_models, localise_queries
from netvlad.pipeline.config import DemoConfig
from netvlad.pipeline.sources import DemoData, prepare_data
from netvlad.train import initialize_clusters, train

logger = logging.getLogger(__name__)

STEPS = ("data", "clusters", "training", "evaluation", "report")
TRAINED, WHITENED, KMEANS = "NetVLAD trained", "NetVLAD trained + whitening", "NetVLAD k-means (off-the-shelf)"


class Timer:
    """Wall and CPU seconds (this process and its children) of each named step."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        logger.info("step %d/%d: %s", STEPS.index(name) + 1, len(STEPS), name)
        wall, cpu = time.perf_counter(), self._cpu()
        yield
        self.steps[name] = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(self._cpu() - cpu, 1)}
        logger.info("step %s done in %.1f s (%.1f CPU s)", name, self.steps[name]["wall_s"], self.steps[name]["cpu_s"])

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def total(self) -> dict[str, float]:
        return {k: round(sum(s[k] for s in self.steps.values()), 1) for k in ("wall_s", "cpu_s")}


def off_the_shelf(pool: str, config: DemoConfig) -> PlaceModel:
    """ImageNet MobileNetV2 with ``pool`` (max or gem) at the demo's input size."""
    pre = Preprocessing(resize="fixed", size=config.size)
    return PlaceModel(ModelConfig(backbone="mobilenet_v2", pool=pool, preprocessing=pre), pretrained=True).eval()


def cluster_step(config: DemoConfig, data: DemoData, run_dir: Path, device, progress: bool) -> Path:
    """k-means-initialised NetVLAD (the off-the-shelf NetVLAD row and training's start) -> its checkpoint."""
    tc = config.train_config
    model = PlaceModel(tc.model_config, pretrained=True).to(device)
    initialize_clusters(model, data.train.database.paths(), tc.cluster_config, device, progress, config.batch_size,
                        config.workers)
    return save_model(model, run_dir / "kmeans.safetensors", extra={"step": "k-means initialisation"})


def train_step(config: DemoConfig, data: DemoData, run_dir: Path, init: Path, device, progress: bool) -> Path:
    """Weakly supervised training from the k-means model -> ``run_dir`` (best checkpoint, whitened final model)."""
    tc = dataclasses.replace(config.train_config, init_model=str(init))
    if tc.whitening_dim and tc.whitening_dim >= len(data.train.database):
        tc = dataclasses.replace(tc, whitening_dim=len(data.train.database) - 1)
        logger.info("whitening to %d dims: the training database holds %d images", tc.whitening_dim,
                    len(data.train.database))
    logger.info("training: %d epochs of ≤ %s queries, cache refresh every %d queries, K=%d, %dx%d input, %s lr %g",
                tc.epochs, tc.epoch_queries or "all", tc.cache_refresh, tc.num_clusters, *tc.size, tc.optimizer, tc.lr)
    return train(tc, data.train, run_dir, val=data.val, device=device, progress=progress)


def evaluate_step(config: DemoConfig, data: DemoData, run_dir: Path, device, progress: bool) -> dict:
    """Recall@N of f_max, GeM, k-means NetVLAD, trained NetVLAD and trained + whitening on the test set."""
    models = {"f_max (off-the-shelf)": off_the_shelf("max", config),
              "GeM (off-the-shelf)": off_the_shelf("gem", config),
              KMEANS: load(run_dir / "kmeans.safetensors"), TRAINED: load(run_dir / "best.safetensors")}
    if config.whitening_dim:
        models[WHITENED] = load(run_dir / "model.safetensors")
    logger.info("evaluating %d models on %r (positives within %g m)", len(models), data.test, config.radius)
    return compare_models(models, data.test, config.radius, config.ns, config.batch_size, config.workers, device,
                          progress)


def pictures_step(config: DemoConfig, data: DemoData, results: dict, run_dir: Path, folder: Path) -> tuple:
    """Localise sampled queries; draw recall.png, training.png and retrieval pictures -> (localised, pictures)."""
    folder.mkdir(parents=True, exist_ok=True)
    localised = localise_queries(results[TRAINED], data.test, config.localise, seed=config.seed)
    for item in localised:
        logger.info("localised %s: %.1f m from its recorded position (top-1 match %s)", item.query, item.error,
                    "correct" if item.correct else "wrong")
    plot_recall({label: r.recall for label, r in results.items()}, folder / "recall.png",
                title=f"{data.test.name}: Recall@N")
    report.plot_training(report.read_log(run_dir), folder / "training.png")
    best_other = max((k for k in results if "off-the-shelf" in k), key=lambda k: results[k].recall[config.ns[0]])
    pictures = {TRAINED: "retrievals_trained.jpg", best_other: "retrievals_off_the_shelf.jpg"}
    for label, name in pictures.items():
        retrieval_picture(results[label], data.test, folder / name, config.retrieval_queries, seed=config.seed)
    return localised, pictures


def run_demo(config: DemoConfig, out_dir: Path | str, device: torch.device | str = "cpu",
             progress: bool = False) -> Path:
    """Run the whole demo into ``out_dir`` (city/, run/, report/); returns the report folder."""
    out_dir, timer = Path(out_dir), Timer()
    run_dir = out_dir / "run"
    if run_dir.exists():
        logger.info("removing the previous run in %s", run_dir)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    with timer.step("data"):
        data = prepare_data(config, out_dir, progress)
        logger.info("data: %s", data.source)
    with timer.step("clusters"):
        init = cluster_step(config, data, run_dir, device, progress)
    with timer.step("training"):
        train_step(config, data, run_dir, init, device, progress)
    with timer.step("evaluation"):
        results = evaluate_step(config, data, run_dir, device, progress)
    folder = out_dir / "report"
    with timer.step("report"):
        localised, pictures = pictures_step(config, data, results, run_dir, folder)
    table = report.recall_table(results)
    report.write_results(folder / "results.json", results, localised, {
        "table": table, "data": data.source, "test_set": repr(data.test), "config": config.to_dict(),
        "timings": timer.steps | {"total": timer.total()}, "run_dir": str(run_dir), "device": str(device),
        "torch_threads": torch.get_num_threads()})
    report.write_index(folder / "index.md", "NetVLAD demo report",
                       report.sections(config, data, results, localised, pictures, timer.steps))
    logger.debug("Recall@N on the test set:\n%s", table)  # the CLI prints it
    logger.info("demo finished in %.1f s (%.1f CPU s); report: %s", timer.total()["wall_s"],
                timer.total()["cpu_s"], folder / "index.md")
    return folder

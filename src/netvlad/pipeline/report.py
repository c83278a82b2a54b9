"""The demo's report folder: index.md, results.json, the Recall@N plot, the training curve, retrieval pictures."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from netvlad.eval import EvalResult
from netvlad.eval.report import condition_recall
from netvlad.files import atomic_write
from netvlad.pipeline.compare import Localisation

logger = logging.getLogger(__name__)


def recall_table(results: Mapping[str, EvalResult], ns: Sequence[int] = (1, 5, 10), markdown: bool = False) -> str:
    """Recall@N (percent) of each method as a text (or Markdown) table, one row per method."""
    width = max(len("method"), *(len(label) for label in results))
    if markdown:
        lines = ["| method | dim | " + " | ".join(f"R@{n}" for n in ns) + " |",
                 "|---|---:|" + "---:|" * len(ns)]
        lines += [f"| {label} | {r.descriptor_dim} | " + " | ".join(f"{r.recall[n]:.1f}" for n in ns) + " |"
                  for label, r in results.items()]
    else:
        lines = [f"{'method':<{width}} {'dim':>6} " + " ".join(f"{'R@' + str(n):>6}" for n in ns)]
        lines += [f"{label:<{width}} {r.descriptor_dim:>6} " + " ".join(f"{r.recall[n]:6.1f}" for n in ns)
                  for label, r in results.items()]
    return "\n".join(lines)


def conditions_by_method(results: Mapping[str, EvalResult], conditions: Sequence[str] | None) -> dict[str, dict]:
    """``{method: {condition: {"num_queries", "recall": {N: percent}}}}``; empty without condition labels."""
    if not conditions:
        return {}
    return {label: condition_recall(r, conditions) for label, r in results.items()}


def condition_markdown(by_method: Mapping[str, Mapping[str, dict]], ns: Sequence[int] = (1, 5)) -> str:
    """Markdown: one row per query condition (with its query count), Recall@N of each method in the columns."""
    labels = list(by_method)
    conditions = list(next(iter(by_method.values())))
    head = "| condition | queries | " + " | ".join(f"{label} R@{n}" for label in labels for n in ns) + " |"
    lines = [head, "|---|---:|" + "---:|" * (len(labels) * len(ns))]
    for c in conditions:
        cells = [f"{by_method[label][c]['recall'][n]:.1f}" for label in labels for n in ns]
        lines.append(f"| {c} | {by_method[labels[0]][c]['num_queries']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_log(run_dir: Path) -> list[dict]:
    """The events of a training run's ``log.jsonl``."""
    path = Path(run_dir) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def kept_epoch(events: Sequence[dict]) -> int | None:
    """The epoch whose weights training kept (its ``done`` event), else the first with the best validation R@5."""
    done = [e for e in events if e["event"] == "done" and e.get("best_epoch", -1) >= 0]
    if done:
        return int(done[-1]["best_epoch"])
    vals = [e for e in events if e["event"] == "validation" and "recall@5" in e]
    return int(max(vals, key=lambda e: (e["recall@5"], -e["epoch"]))["epoch"]) if vals else None


def plot_training(events: Sequence[dict], path: Path, window: int = 10) -> Path:
    """Training loss per step (raw and a ``window``-step running mean) and validation Recall@N per epoch (PNG)."""
    import matplotlib  # heavy, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([e["step"] for e in events if e["event"] == "train"], dtype=float)
    losses = np.array([e["loss"] for e in events if e["event"] == "train"], dtype=float)
    vals = [e for e in events if e["event"] == "validation"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=110)
    if len(losses):
        left.plot(steps, losses, color="0.75", lw=0.8, label="batch")
        if len(losses) >= window:
            mean = np.convolve(losses, np.ones(window) / window, mode="valid")
            left.plot(steps[window - 1:], mean, color="C0", label=f"mean of {window}")
    left.set(xlabel="step (batches of tuples)", ylabel="ranking loss", title="training loss")
    left.legend(loc="upper right")
    for key in sorted({k for e in vals for k in e if k.startswith("recall@")}, key=lambda k: int(k[7:])):
        right.plot([e["epoch"] for e in vals], [e[key] for e in vals], marker="o", label=key.replace("recall", "R"))
    right.set(xlabel="epoch (0: k-means init)", ylabel="Recall@N (%)", title="validation", ylim=(0, 100))
    right.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    kept = kept_epoch(events)
    if kept is not None:
        right.axvline(kept, color="0.3", ls="--", lw=1, label=f"kept: epoch {kept} (best R@5)")
    if vals:
        right.legend(loc="lower right")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_results(path: Path, results: Mapping[str, EvalResult], localised: Sequence[Localisation],
                  extra: dict, by_condition: Mapping[str, dict] | None = None) -> Path:
    """``results.json``: Recall@N per method (and per query condition), localisations, and ``extra``."""
    methods = {label: r.summary(label) for label, r in results.items()}
    for label, per in (by_condition or {}).items():
        methods[label]["recall_by_condition"] = per
    data = {"methods": methods, "localisation": [vars(item) for item in localised], **extra}
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1, default=str) + "\n",
                                                         encoding="utf-8"))


def localisation_table(localised: Sequence[Localisation]) -> str:
    """Markdown rows: query, estimated and recorded easting/northing, error in metres."""
    lines = ["| query | estimate (E, N) | recorded (E, N) | error (m) | top-1 correct |", "|---|---|---|---:|:---:|"]
    for item in localised:
        lines.append(f"| `{item.query}` | {item.estimate[0]:.1f}, {item.estimate[1]:.1f} | {item.truth[0]:.1f}, "
                     f"{item.truth[1]:.1f} | {item.error:.1f} | {'yes' if item.correct else 'no'} |")
    return "\n".join(lines)


def write_index(path: Path, title: str, sections: Sequence[tuple[str, str]]) -> Path:
    """A Markdown page: ``title``, then each (heading, body) section."""
    text = f"# {title}\n\n" + "\n\n".join(f"## {head}\n\n{body}" for head, body in sections) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def timing_table(steps: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown rows: step, wall seconds, CPU seconds (all processes)."""
    lines = ["| step | wall (s) | CPU (s) |", "|---|---:|---:|"]
    lines += [f"| {name} | {t['wall_s']:.1f} | {t['cpu_s']:.1f} |" for name, t in steps.items()]
    total = {k: sum(t[k] for t in steps.values()) for k in ("wall_s", "cpu_s")}
    return "\n".join(lines + [f"| **total** | {total['wall_s']:.1f} | {total['cpu_s']:.1f} |"])


HOW_TO_READ = (
    "Each test query is searched against the database images by descriptor distance (L2, lower is closer). "
    "**Recall@N** is the percentage of queries with at least one correct image — taken within {radius:g} m of "
    "the query — among the N closest: Recall@1 is how often the single best match is right, and higher is better "
    "everywhere. The methods differ in how an image becomes a descriptor: pooled off the shelf from an ImageNet "
    "network (f_max, GeM), NetVLAD with k-means clusters, and NetVLAD trained on this city's training part. In the "
    "retrieval pictures each row is one query (grey frame, captioned with its name and condition) followed by its "
    "five closest database images, best first, each captioned with its rank, name and distance: a green frame is a "
    "correct match, red a wrong one. The training plot marks the epoch whose weights were kept (the best "
    "validation Recall@5).")


def sections(config, data, results: Mapping[str, EvalResult], localised: Sequence[Localisation],
             pictures: Mapping[str, str], steps: Mapping[str, Mapping[str, float]],
             whitening_dim: int | None = None, by_condition: Mapping[str, dict] | None = None,
             kmeans_descriptors: int | None = None) -> list[tuple[str, str]]:
    """The (heading, Markdown body) sections of the demo's index.md; ``kmeans_descriptors``: the number of local
    descriptors the k-means ran on, as recorded by the clusters step."""
    tc = config.train_config
    test = data.test
    whitening = f"; PCA whitening to {whitening_dim} dims fitted on the training database" if whitening_dim else ""
    kmeans = f"{kmeans_descriptors:,} local descriptors" if kmeans_descriptors else "local descriptors"
    per_condition = [("Recall@N per query condition", condition_markdown(by_condition))] if by_condition else []
    return [
        ("How to read this", HOW_TO_READ.format(radius=config.radius)),
        ("Data", f"{data.source}.\n\nTest set: {len(test.database)} database images, {len(test.queries)} queries; "
                 f"a retrieved image is correct within {config.radius:g} m of the query."),
        ("Recall@N on the test set", recall_table(results, markdown=True) + "\n\n![Recall@N](recall.png)"),
        *per_condition,
        ("Training", f"MobileNetV2 (ImageNet) + NetVLAD, K = {tc.num_clusters}, input {tc.size[0]}×{tc.size[1]}; "
                     f"clusters from k-means on {kmeans}; triplet ranking loss "
                     f"(margin {tc.margin}) with {tc.num_negatives} hard negatives mined from a descriptor cache "
                     f"refreshed every {tc.cache_refresh} queries; {tc.epochs} epochs of ≤ {tc.epoch_queries} queries, "
                     f"{tc.optimizer} lr {tc.lr:g}; best epoch by validation Recall@5{whitening}."
                     "\n\n![training curve](training.png)"),
        ("Retrievals", "\n\n".join(f"**{label}** — each row: a test query (grey), then its top-5 database images "
                                   f"(rank, name, distance), green correct, red wrong.\n\n![{label}]({name})"
                                   for label, name in pictures.items())),
        ("Localisation", "Position of sampled test queries from the trained model's top-1 match (UTM metres).\n\n"
                         + localisation_table(localised)),
        ("Time", timing_table(steps)),
    ]

"""The precision–recall curve of top-1 matches as a PNG (see :mod:`netvlad.eval.pr`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from netvlad.eval.pr import PRCurve
from netvlad.files import save_figure


def plot_pr(curves: Mapping[str, PRCurve], path: Path | str, title: str = "") -> Path:
    """Plot precision against recall (percent) for each labelled curve, its AUC in the legend; write a PNG."""
    import matplotlib  # heavy, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for label, curve in curves.items():
        ax.step([0.0, *(100 * curve.recall)], [100.0 * (curve.precision[0] if len(curve.precision) else 1.0),
                                                *(100 * curve.precision)], where="post",
                label=f"{label} (AUC {curve.auc:.3f}, R@100P {100 * curve.recall_at_precision(1.0):.1f} %)")
    ax.set(xlabel="recall (%)", ylabel="precision (%)", xlim=(0, 100), ylim=(0, 101), title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)

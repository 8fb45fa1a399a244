"""Figures of :mod:`advlab.experiments.robust_sweep`: one source image swept into every class
on each CNN, titled with what the attacked model and the independent judge see."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from advlab.experiments.robust_sweep import RobustSweepRun
from advlab.reporting.figures_analysis import _show, register_figures

__all__ = ["robust_sweep_figure"]


def robust_sweep_figure(run: RobustSweepRun) -> Figure:
    """Rows: models; columns: target classes; title: target, attacked-model confidence, judge's call."""
    names = list(run.sweeps)
    k = max(int(s.targets.numel()) for s in run.sweeps.values())
    fig, axes = plt.subplots(len(names), k, figsize=(1.15 * k, 1.75 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        sw, judge = run.sweeps[name], run.judge_labels[name]
        for j in range(k):
            ax = axes[r, j]
            if j >= sw.targets.numel():
                ax.axis("off")
                continue
            t = int(sw.targets[j])
            mark = "" if bool(sw.success[j]) else " x"
            _show(ax, sw.images[j], f"-> {run.classes[t]}{mark} {float(sw.target_confidence[j]):.0%}\n"
                  f"judge: {run.classes[int(judge[j])]}")
        axes[r, 0].set_ylabel(name.replace(" adversarially", "\nadversarially"), fontsize=7)
        axes[r, 0].yaxis.set_visible(True)
    fig.tight_layout()
    return fig


register_figures(RobustSweepRun, lambda run: {"sweep": robust_sweep_figure(run)})

"""Figures of :mod:`advlab.experiments.detectors`: the retraining rounds as a curve, and example images."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from advlab.experiments.detectors import DetectorsRun
from advlab.reporting.figures_analysis import _show, register_figures

__all__ = ["rounds_figure", "examples_figure"]


def rounds_figure(run: DetectorsRun) -> Figure:
    """Detection rate (at the fixed FPR) per retraining round: fresh adaptive attack and the last one."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for i, (name, curve) in enumerate(run.data["curves"].items()):
        color = f"C{i}"
        rounds = [c["round"] for c in curve]
        fresh = [c["fresh_attack"] for c in curve]
        ax.plot(rounds, fresh, "o-", color=color, label=f"{name}: fresh adaptive attack")
        prev = [(c["round"], c["previous_attack"]) for c in curve if c["previous_attack"] is not None]
        if prev:
            ax.plot([p[0] for p in prev], [p[1] for p in prev], "s--", color=color, alpha=0.7,
                    label=f"{name}: previous round's attack")
        pgd = next(r["pgd_detection"] for r in run.data["rows"] if r["detector"] == name)
        ax.axhline(pgd, color=color, lw=0.8, ls=":")
    ax.axhline(run.data["fpr"], color="gray", lw=0.8, label=f"chance (FPR {run.data['fpr']:.0%})")
    ax.set_xlabel("retraining round")
    ax.set_ylabel("detection rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(range(run.data["rounds"] + 1))
    ax.legend(fontsize=6.5, loc="upper right")
    ax.set_title("dotted: detection of the PGD it was trained on", fontsize=8)
    fig.tight_layout()
    return fig


def examples_figure(run: DetectorsRun) -> Figure:
    """Rows: clean, PGD, adaptive (against the feature head); a few test images."""
    m = len(run.clean)
    fig, axes = plt.subplots(3, max(m, 1), figsize=(1.2 * max(m, 1), 3.9), squeeze=False)
    for r, (name, imgs) in enumerate((("clean", run.clean), ("PGD", run.pgd), ("adaptive", run.adaptive))):
        for j in range(m):
            _show(axes[r, j], imgs[j], name if j == 0 else "")
    fig.tight_layout()
    return fig


register_figures(DetectorsRun, lambda run: {"rounds": rounds_figure(run), "examples": examples_figure(run)})

"""Figures of :mod:`advlab.experiments.spam`: evasion rate against the number of added features."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from advlab.experiments.spam import SpamEvasionRun
from advlab.reporting.figures_analysis import register_figures

__all__ = ["evasion_curves_figure"]

_STYLE = {"white box": "-", "transfer": "--", "black box": ":"}
_COLOR = {"neural": "tab:red", "logistic": "tab:blue", "tree": "tab:green"}


def evasion_curves_figure(run: SpamEvasionRun) -> Figure:
    """One panel per corpus: evasion rate of detected spam against the added-feature budget k."""
    corpora = run.data["corpora"]
    fig, axes = plt.subplots(1, len(corpora), figsize=(6.2 * len(corpora), 4.0), squeeze=False)
    for ax, c in zip(axes[0], corpora, strict=True):
        for r in c["rows"]:
            ys = [100 * v if v is not None else float("nan") for v in r["evasion"]]
            src = f" from {r['crafted_on']}" if r["kind"] == "transfer" else ""
            ax.plot(c["ks"], ys, _STYLE[r["kind"]], marker="o", ms=3, color=_COLOR[r["detector"]],
                    label=f"{r['attack']}{src} vs {r['detector']} ({r['kind']})")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("features (words) added, k")
        ax.set_ylabel("detected spam now classified ham (%)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.set_title(f"{c['corpus']}: {c['features']} binary features, {c['n_test_spam']} test spam",
                     fontsize=10)
        ax.legend(fontsize=6.5, loc="lower right")
    fig.tight_layout()
    return fig


register_figures(SpamEvasionRun, lambda run: {"curves": evasion_curves_figure(run)})

"""Figures of :mod:`advlab.experiments.text`: test error and worst-case flip share per method."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from advlab.experiments.text import TextVATRun
from advlab.reporting.figures_analysis import register_figures

__all__ = ["text_vat_figure"]


def text_vat_figure(run: TextVATRun) -> Figure:
    """Test error (with the spread over seeds) and the share of sentences flipped by a worst-case
    embedding perturbation, per training method."""
    rows = run.data["rows"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 3.6))
    xs = np.arange(len(rows))
    a.bar(xs, [100 * r["test_error"] for r in rows], yerr=[100 * r["test_error_std"] for r in rows],
          color="tab:blue", capsize=3)
    a.set_ylabel("test error (%)")
    a.set_title(f"sentence polarity, {rows[0]['labels']} labels", fontsize=10)
    b.bar(xs, [100 * (r["flip_share"] or 0) for r in rows], color="tab:red")
    b.set_ylabel("flipped by an eps-perturbation (%)")
    b.set_title(f"worst-case L2 embedding perturbation, eps = {run.data['eps']:g}", fontsize=10)
    for ax in (a, b):
        ax.set_xticks(xs, [r["method"].replace(" + ", " +\n") for r in rows], fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


register_figures(TextVATRun, lambda run: {"bars": text_vat_figure(run)})

"""Figures for transferability and black-box attacks (data in, matplotlib Figure out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["transfer_heatmap", "queries_curve", "universal_panel", "ensemble_bars"]


def transfer_heatmap(rates: Sequence[Sequence[float]], sources: Sequence[str], targets: Sequence[str],
                     title: str = "Transfer rate (source -> target)") -> Figure:
    """Heatmap of a transfer matrix: rows = sources, columns = targets, cells in percent."""
    r = np.asarray(rates, dtype=float) * 100
    fig, ax = plt.subplots(figsize=(1.1 * len(targets) + 2.2, 0.8 * len(sources) + 1.6))
    im = ax.imshow(r, cmap="viridis", vmin=0, vmax=100)
    ax.set_xticks(range(len(targets)), labels=list(targets))
    ax.set_yticks(range(len(sources)), labels=list(sources))
    ax.set_xlabel("target (tested on)")
    ax.set_ylabel("source (crafted on)")
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            v = r[i, j]
            ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.0f}", ha="center", va="center",
                    color="white" if v < 60 else "black", fontsize=9)
    fig.colorbar(im, ax=ax, label="% misclassified")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def queries_curve(history: Sequence[Mapping[str, Any]], key: str = "oracle_misclassification",
                  published: tuple[float, float] | None = None, label: str = "ours",
                  title: str = "Black-box attack: oracle misclassification vs queries") -> Figure:
    """Success of the substitute's examples on the oracle against the labels spent."""
    q = [h["queries"] for h in history if key in h]
    v = [100 * h[key] for h in history if key in h]
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.plot(q, v, "o-", label=label)
    if published is not None:
        ax.plot([published[0]], [100 * published[1]], "r*", markersize=12,
                label="Papernot et al. 2017 (MetaMind)")
    ax.set_xlabel("oracle queries (labels)")
    ax.set_ylabel("% adversarial examples misclassified")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _img(t: torch.Tensor) -> np.ndarray:
    a = t.detach().cpu().float().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


def universal_panel(perturbation: torch.Tensor, clean: torch.Tensor, adv: torch.Tensor,
                    clean_pred: Sequence[int], adv_pred: Sequence[int], classes: Sequence[str],
                    title: str = "") -> Figure:
    """The universal perturbation and a few images before/after adding it."""
    k = min(6, clean.shape[0])
    fig, axes = plt.subplots(2, k + 1, figsize=(1.5 * (k + 1), 3.9))
    p = _img(perturbation)
    m = float(np.abs(p).max()) or 1.0
    axes[0, 0].imshow(p, cmap="seismic", vmin=-m, vmax=m)
    axes[0, 0].set_title("perturbation", fontsize=8)
    axes[1, 0].axis("off")
    for i in range(k):
        axes[0, i + 1].imshow(_img(clean[i]), cmap="gray", vmin=0, vmax=1)
        axes[0, i + 1].set_title(f"clean: {classes[clean_pred[i]]}", fontsize=8)
        axes[1, i + 1].imshow(_img(adv[i]), cmap="gray", vmin=0, vmax=1)
        color = "red" if adv_pred[i] != clean_pred[i] else "black"
        axes[1, i + 1].set_title(f"+v: {classes[adv_pred[i]]}", fontsize=8, color=color)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def ensemble_bars(single: Mapping[str, float], ensemble: float, held_out: str,
                  title: str = "") -> Figure:
    """Transfer to a held-out model: each single source vs the ensemble of all of them."""
    names = [*single, "ensemble"]
    vals = [100 * single[k] for k in single] + [100 * ensemble]
    fig, ax = plt.subplots(figsize=(0.9 * len(names) + 2.5, 3.2))
    ax.bar(names, vals, color=["#888"] * len(single) + ["#c33"])
    for i, v in enumerate(vals):
        ax.text(i, v + 1, f"{v:.0f}%", ha="center", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"% misclassified by held-out {held_out}")
    ax.set_title(title or f"Transfer to a held-out {held_out}", fontsize=10)
    fig.tight_layout()
    return fig

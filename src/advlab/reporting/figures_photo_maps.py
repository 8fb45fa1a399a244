"""Figures of :mod:`advlab.experiments.photo_maps`: logits of the top classes along a direction,
and decision maps coloured by their winning classes (a 1000-class legend would be unreadable)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from advlab.experiments.photo_maps import (
    PhotoCrossSectionRun,
    PhotoDecisionMapRun,
    PhotoNoiseRun,
    PhotoPhysicalRun,
)
from advlab.reporting.figures_analysis import register_figures

__all__ = ["photo_cross_section_figure", "photo_decision_map_figure", "photo_noise_figure",
           "photo_physical_figure"]

_COLORS = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]


def _top_classes(logits: torch.Tensor, label: int, k: int) -> list[int]:
    """The true class, then the classes with the largest logit anywhere on the path."""
    best = logits.amax(0).argsort(descending=True).tolist()
    out = [label] if label >= 0 else []
    return out + [c for c in best if c != label][: k - len(out)]


def photo_cross_section_figure(run: PhotoCrossSectionRun, k: int = 6) -> Figure:
    """Logits of the true class and the top wrong classes along each cross section."""
    secs = run.sections
    fig, axes = plt.subplots(1, len(secs), figsize=(4.4 * len(secs), 3.4), squeeze=False)
    for ax, cs, title in zip(axes[0], secs, run.titles, strict=True):
        t = (cs.t * 255).numpy()
        for j, c in enumerate(_top_classes(cs.logits, cs.label, k)):
            true = c == cs.label
            ax.plot(t, cs.logits[:, c].numpy(), color=_COLORS[j % 10], lw=2.4 if true else 1.1,
                    label=f"{run.classes[c][:18]}{' (true)' if true else ''}")
        ax.axvline(0, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("t (max-norm step, /255)")
        ax.set_title(f"{title}\n{cs.n_pieces} linear piece(s)", fontsize=8)
        ax.legend(fontsize=6, loc="best")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("logit")
    fig.tight_layout()
    return fig


def photo_decision_map_figure(run: PhotoDecisionMapRun) -> Figure:
    """One map per kind: white = true class, the winning wrong classes coloured."""
    fig, axes = plt.subplots(1, len(run.maps), figsize=(3.6 * len(run.maps), 3.8), squeeze=False)
    for ax, (kind, m) in zip(axes[0], run.maps.items(), strict=True):
        pr = m.predictions[0]
        lab = int(m.labels[0])
        wrong = [c for c in torch.bincount(pr.flatten()).argsort(descending=True).tolist() if c != lab]
        wrong = [c for c in wrong if (pr == c).any()][:9]
        img = np.full((*pr.shape, 3), 0.35)
        img[(pr == lab).numpy()] = 1.0
        for j, c in enumerate(wrong):
            img[(pr == c).numpy()] = _COLORS[j % 10]
        ax.imshow(img[::-1], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        h, v = kind.split("-")
        ax.set_xlabel(f"{h} (+-{m.eps * 255:.0f}/255)", fontsize=8)
        ax.set_ylabel(v, fontsize=8)
        ax.set_title(f"{kind}: {m.mean_misclassified:.0%} wrong", fontsize=8)
        handles = [Patch(facecolor="white", edgecolor="k", label=f"{run.classes[lab][:16]} (true)")]
        handles += [Patch(color=_COLORS[j % 10], label=run.classes[c][:16]) for j, c in enumerate(wrong)]
        handles.append(Patch(color=(0.35, 0.35, 0.35), label="other"))
        ax.legend(handles=handles, fontsize=5, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


register_figures(PhotoCrossSectionRun, lambda run: {"cross": photo_cross_section_figure(run)})
register_figures(PhotoDecisionMapRun, lambda run: {"maps": photo_decision_map_figure(run)})
def photo_noise_figure(run: PhotoNoiseRun) -> Figure:
    """Share of noise images taken by the top class, and the mean max confidence, per noise size;
    the CIFAR-10 "horse" share of the lecture (70%) as a line."""
    rows = run.data["rows"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.0, 3.4))
    for kind, color in (("gaussian", "tab:blue"), ("uniform", "tab:orange")):
        rs = [r for r in rows if r["kind"] == kind]
        sizes = [r["size"] for r in rs]
        a.plot(sizes, [100 * r["top_share"] for r in rs], "o-", color=color, label=kind)
        for r in rs:
            if r["top"]:
                a.annotate(r["top"][0]["class"].split(",")[0], (r["size"], 100 * r["top_share"]),
                           fontsize=7, xytext=(3, 3), textcoords="offset points")
        b.plot(sizes, [100 * r["mean_max_confidence"] for r in rs], "o-", color=color, label=kind)
    a.axhline(100 * run.data["published_top_share"], color="k", ls=":", lw=1,
              label='lecture: "horse", 70% of CIFAR-10 noise')
    a.set_ylabel("images taken by the top class (%)")
    b.set_ylabel("mean max softmax confidence (%)")
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("noise standard deviation (pixels in [0, 1])")
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    a.set_title(f"{run.data['n']} noise images per size: who owns noise space", fontsize=10)
    fig.tight_layout()
    return fig


def photo_physical_figure(run: PhotoPhysicalRun) -> Figure:
    """Destruction rates of the print-and-photograph preset, ours (n photos) beside Kurakin et al."""
    rows = run.data["rows"]
    eps = sorted({r["eps_255"] for r in rows}, reverse=True)
    attacks = [r["attack"] for r in rows if r["eps_255"] == eps[0]]
    fig, axes = plt.subplots(1, len(eps), figsize=(4.6 * len(eps), 3.4), squeeze=False)
    xs = np.arange(len(attacks))
    for ax, e in zip(axes[0], eps, strict=True):
        rs = {r["attack"]: r for r in rows if r["eps_255"] == e}
        ours = [100 * (rs[a]["rate"] if rs[a]["rate"] is not None else float("nan")) for a in attacks]
        ax.bar(xs - 0.2, ours, 0.4, color="tab:red", label=f"ours (n = {run.data['n']} photos)")
        ax.bar(xs + 0.2, [100 * rs[a]["published"] for a in attacks], 0.4, color="tab:gray",
               label="Kurakin et al. 2016 (average)")
        ax.set_xticks(xs, attacks)
        ax.set_ylim(0, 105)
        ax.set_ylabel("destruction rate (%)")
        ax.set_title(f"eps = {e:g}/255", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


register_figures(PhotoNoiseRun, lambda run: {"noise": photo_noise_figure(run)})
register_figures(PhotoPhysicalRun, lambda run: {"destruction": photo_physical_figure(run)})

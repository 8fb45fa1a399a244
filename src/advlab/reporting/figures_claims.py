"""Figures of :mod:`advlab.experiments.claims` (data in, ``Figure`` out): the X's and O's maps,
linear vs deep adversarial training, and where the perturbation is put."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from advlab.analysis.claims import XsOsResult
from advlab.experiments.claims import LinearDeepATRun, PerturbLayerRun, XsOsRun
from advlab.reporting.figures_analysis import _show, register_figures

__all__ = ["xs_and_os_maps_figure", "xs_and_os_sweep_figure", "linear_vs_deep_figure",
           "softmax_weights_figure", "perturb_layer_figure"]


def _map(ax, model: torch.nn.Module, box: float, res: int = 201) -> None:  # type: ignore[no-untyped-def]
    t = torch.linspace(-box, box, res)
    g1, g2 = torch.meshgrid(t, t, indexing="xy")
    with torch.no_grad():
        p = torch.softmax(model(torch.stack([g1.reshape(-1), g2.reshape(-1)], 1)), 1)[:, 1]
    ax.imshow(p.reshape(res, res).numpy(), origin="lower", extent=(-box, box, -box, box), cmap="RdBu_r",
              vmin=0, vmax=1, alpha=0.55)
    ax.contour(t.numpy(), t.numpy(), p.reshape(res, res).numpy(), levels=[0.5], colors="k", linewidths=1)


def _data(ax, r: XsOsResult) -> None:  # type: ignore[no-untyped-def]
    x, y = r.x.numpy(), r.y.numpy()
    ax.scatter(x[y == 0, 0], x[y == 0, 1], marker="o", facecolors="none", edgecolors="tab:blue", s=18,
               label="O (data)")
    ax.scatter(x[y == 1, 0], x[y == 1, 1], marker="x", color="tab:red", s=18, label="X (data)")


def xs_and_os_maps_figure(r: XsOsResult) -> Figure:
    """Decision maps of the two wide fits and the linear fit, with the adversarial points of
    each story: off-data disagreements and per-point steps (overfitting), one shared offset
    per class (linearity)."""
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.6))
    dis = r.disagree.numpy()
    for ax, name in zip(axes, r.models, strict=True):
        _map(ax, r.models[name], r.box)
        _data(ax, r)
        if name != "linear":
            if dis.size:
                ax.scatter(dis[:, 0], dis[:, 1], s=3, color="tab:purple", alpha=0.6,
                           label="off-data point where A and B disagree")
            mv, fl = r.per_point_moved[name].numpy(), r.offsets[name].flipped.numpy()
            ax.scatter(mv[:, 0], mv[:, 1], s=8, color="tab:green", alpha=0.6,
                       label=f"per-point step, eps={r.eps:g}")
            title = (f"{name}: wide ReLU net\none offset flips {r.offsets[name].share:.0%}, "
                     f"per point {r.per_point[name]:.0%}")
        else:
            off = r.offsets[name]
            mv, fl = off.moved.numpy(), off.flipped.numpy()
            ax.scatter(mv[~fl, 0], mv[~fl, 1], s=8, color="tab:gray", alpha=0.6, label="shifted, not flipped")
            ax.scatter(mv[fl, 0], mv[fl, 1], s=14, color="tab:orange", label="shifted and flipped")
            for c, col in ((0, "tab:blue"), (1, "tab:red")):
                o = off.offsets[c].numpy()
                ax.annotate("", xy=(-2.4 + o[0], 2.4 - 0.5 * c + o[1]), xytext=(-2.4, 2.4 - 0.5 * c),
                            arrowprops={"arrowstyle": "->", "color": col, "lw": 1.6})
            title = (f"linear model\none offset per class (arrows) flips {off.share:.0%}; "
                     f"corner confidence {r.corner_conf[name][-1]:.3f}")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-r.box, r.box)
        ax.set_ylim(-r.box, r.box)
        ax.set_aspect("equal")
        ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return fig


def xs_and_os_sweep_figure(r: XsOsResult) -> Figure:
    """Share of points flipped against the budget: one shared offset (solid) vs per-point steps (dotted)."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    eps = list(r.sweep)
    for i, name in enumerate(r.models):
        col = plt.get_cmap("tab10")(i)
        ax.plot(eps, [100 * r.sweep[e][name][0] for e in eps], "-o", ms=3, color=col,
                label=f"{name}: one offset")
        ax.plot(eps, [100 * r.sweep[e][name][1] for e in eps], ":", color=col, label=f"{name}: per point")
    ax.set_xlabel("L2 budget eps (the C has radius 1)")
    ax.set_ylabel("points flipped (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def linear_vs_deep_figure(run: LinearDeepATRun) -> Figure:
    """Clean and FGSM test error before and after adversarial training, ours beside published."""
    rows = run.data["rows"]
    models = ["softmax regression", "maxout network"]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharey=True)
    for ax, m in zip(axes, models, strict=True):
        by = {r["training"]: r for r in rows if r["model"] == m}
        xs = np.arange(2)
        for k, (key, col) in enumerate((("clean_error", "tab:gray"), ("fgsm_error", "tab:red"))):
            vals = [100 * (by[t][key] or 0.0) for t in ("clean", "adversarial")]
            ax.bar(xs + (k - 0.5) * 0.36, vals, 0.36, color=col, label=key.replace("_", " ") + " (ours)")
            for xi, v in zip(xs, vals, strict=True):
                ax.text(xi + (k - 0.5) * 0.36, v + 1, f"{v:.1f}", ha="center", fontsize=7)
        if m == "maxout network":
            pub = run.data["published"]
            published = [100 * pub["maxout_fgsm_error_before"], 100 * pub["maxout_fgsm_error_after"]]
            ax.scatter(xs + 0.18, published,
                       marker="_", s=400, color="k", zorder=3, label="FGSM error (published)")
        ax.set_xticks(xs, ["clean training", "FGSM adversarial training"])
        ax.set_title(m, fontsize=10)
        ax.set_ylim(0, 110)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel(f"test error (%), FGSM eps = {run.data['eps']}")
    fig.tight_layout()
    return fig


def softmax_weights_figure(run: LinearDeepATRun) -> Figure:
    """Softmax regression's input-space weights per class, clean vs adversarially trained."""
    labels = list(run.weights)
    k = int(run.weights[labels[0]].shape[0])
    fig, axes = plt.subplots(len(labels), k, figsize=(1.0 * k, 1.25 * len(labels)), squeeze=False)
    for r, lab in enumerate(labels):
        for c in range(k):
            _show(axes[r, c], run.weights[lab][c], f"class {c}" if r == 0 else "", signed=True)
        axes[r, 0].set_ylabel(lab, fontsize=7)
        axes[r, 0].yaxis.set_visible(True)
    fig.tight_layout()
    return fig


def perturb_layer_figure(run: PerturbLayerRun) -> Figure:
    """Clean and input-space FGSM accuracy per place of the training perturbation."""
    rows = run.data["rows"]
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    xs = np.arange(len(rows))
    series = (("clean_acc", "clean", "tab:gray"),
              ("fgsm_acc_small", f"FGSM eps={run.data['eps_small']:g}", "tab:orange"),
              ("fgsm_acc", f"FGSM eps={run.data['eps']:g}", "tab:red"))
    for k, (key, lab, col) in enumerate(series):
        ax.bar(xs + (k - 1) * 0.27, [100 * (r[key] or 0.0) for r in rows], 0.27, color=col, label=lab)
    ax.set_xticks(xs, [r["perturbed"] for r in rows], fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("FGSM adversarial training: where the perturbation is put", fontsize=10)
    fig.tight_layout()
    return fig


register_figures(XsOsRun, lambda run: {"maps": xs_and_os_maps_figure(run.result),
                                       "sweep": xs_and_os_sweep_figure(run.result)})
register_figures(LinearDeepATRun, lambda run: {"errors": linear_vs_deep_figure(run),
                                               "weights": softmax_weights_figure(run)})
register_figures(PerturbLayerRun, lambda run: {"bars": perturb_layer_figure(run)})

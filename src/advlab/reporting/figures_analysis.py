"""Figures for the analyses of :mod:`advlab.analysis` (data in, ``Figure`` out, no files)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from advlab.analysis.class_sweep import ClassSweep, GradientAscent  # noqa: E402
from advlab.analysis.cross_section import CrossSection  # noqa: E402
from advlab.analysis.decision_map import DecisionMaps  # noqa: E402
from advlab.analysis.generative import GenerativeComparison  # noqa: E402
from advlab.analysis.linear import LogisticSignResult, UniversalSignResult  # noqa: E402
from advlab.analysis.model_based import ModelBasedResult, mean_sine  # noqa: E402
from advlab.analysis.noise import NoiseResult  # noqa: E402
from advlab.analysis.rbf import PUBLISHED_FGSM, FGSMRow  # noqa: E402
from advlab.analysis.same_norm import SameNormResult  # noqa: E402
from advlab.analysis.subspace import SubspaceResult  # noqa: E402
from advlab.experiments.analysis import (  # noqa: E402
    AnalysisRun,
    ClassSweepRun,
    CrossSectionsRun,
    DecisionMapsRun,
    GenerativeRun,
    LinearModelsRun,
    ModelBasedRun,
    NoiseRun,
    RBFRun,
    SameNormRun,
    SubspaceRun,
)

__all__ = ["cross_sections_figure", "decision_maps_figure", "same_norm_figure",
           "logistic_sign_figure", "class_sweep_figure", "gradient_ascent_figure",
           "fgsm_rows_figure", "noise_figure", "subspace_figure", "generative_figure",
           "model_based_figure", "analysis_figures", "FIGURE_DPI"]

#: resolution of the analysis figures (report and ``advlab analyze`` PNGs)
FIGURE_DPI = 90

from advlab.reporting.figures import _show as _show_image  # noqa: E402

_COLORS = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]


def _show(ax, t: torch.Tensor, title: str = "", signed: bool = False) -> None:  # type: ignore[no-untyped-def]
    _show_image(ax, t, title, signed, fontsize=8)


def cross_sections_figure(sections: Sequence[CrossSection], titles: Sequence[str],
                          classes: Sequence[str]) -> Figure:
    """Every class's logit along ``x + t d``, one panel per cross section; breakpoints ticked."""
    fig, axes = plt.subplots(1, len(sections), figsize=(4.6 * len(sections), 3.4), squeeze=False)
    for ax, cs, title in zip(axes[0], sections, titles, strict=True):
        t = cs.t.numpy()
        for c in range(cs.logits.shape[1]):
            true = c == cs.label
            ax.plot(t, cs.logits[:, c].numpy(), color=_COLORS[c % 10], lw=2.4 if true else 1.1,
                    label=f"{classes[c]}{' (true)' if true else ''}")
        for b in cs.breakpoints[:400]:
            ax.axvline(b, ymin=0, ymax=0.03, color="k", lw=0.5)
        ax.axvline(0, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("t (step along the direction, max-norm units)")
        ax.set_title(f"{title}\n{cs.n_pieces} linear piece(s)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("logit")
    axes[0, -1].legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def decision_maps_figure(maps: DecisionMaps, classes: Sequence[str], cols: int | None = None,
                         title: str = "") -> Figure:
    """The Warde-Farley & Goodfellow mosaic: one cell per example, white = true class."""
    n, r = maps.predictions.shape[0], maps.predictions.shape[1]
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    pad = 1
    canvas = np.full((rows * (r + pad) + pad, cols * (r + pad) + pad, 3), 0.35)
    palette = np.array(_COLORS)
    for i in range(n):
        pr = maps.predictions[i].numpy()
        cell = palette[pr % 10].copy()
        cell[pr == int(maps.labels[i])] = 1.0
        y0, x0 = pad + (i // cols) * (r + pad), pad + (i % cols) * (r + pad)
        canvas[y0:y0 + r, x0:x0 + r] = cell[::-1]  # vertical axis upwards
    fig, ax = plt.subplots(figsize=(4.2, 4.2 * rows / cols + 0.5))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    horiz, vert = maps.kind.split("-")
    ax.set_xlabel(f"{horiz} direction (each cell: +-{maps.eps:g})", fontsize=8)
    ax.set_ylabel(f"{vert} direction", fontsize=8)
    ax.set_title(title or f"{maps.kind}: {maps.mean_misclassified:.1%} misclassified", fontsize=9)
    used = sorted({int(c) for c in maps.predictions.unique()})
    handles = [Patch(color=_COLORS[c % 10], label=f"predicted {classes[c]}") for c in used]
    handles.insert(0, Patch(facecolor="white", edgecolor="k", label="true class"))
    ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def same_norm_figure(res: SameNormResult, classes: Sequence[str]) -> Figure:
    """Clean input and four perturbations of the same L2 norm with predictions."""
    fig, axes = plt.subplots(1, 5, figsize=(10.5, 2.9))
    _show(axes[0], res.x, f"clean {classes[res.label]}\npred {classes[res.clean_prediction]} "
          f"{res.clean_confidence:.0%}")
    short = ["nearest training " + (classes[res.neighbour_class] if res.neighbour_class >= 0
                                    else "neighbour"), "random", "erasing", "adversarial"]
    for i in range(4):
        _show(axes[i + 1], res.images[i],
              f"{short[i]}\nL2 {float(res.l2[i]):.2f}, Linf {float(res.linf[i]):.2f}\n"
              f"pred {classes[int(res.predictions[i])]} {float(res.confidences[i]):.0%}")
    fig.tight_layout()
    return fig


def logistic_sign_figure(res: LogisticSignResult, classes: Sequence[str],
                         universal: Sequence[UniversalSignResult] = ()) -> Figure:
    """``w``, ``sign(w)`` and examples ``x``, ``x + eps sign(w)``, ``x - eps sign(w)``."""
    k = res.examples.shape[0]
    fig, axes = plt.subplots(2, max(3, k + 2) if k else 3, figsize=(1.7 * (k + 2), 3.9),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    _show(axes[0, 0], res.weight, "w", signed=True)
    _show(axes[0, 1], res.sign, "sign(w)", signed=True)
    axes[0, 0].axis("on")
    axes[0, 1].axis("on")
    for j in range(k):
        for row, (idx, lab) in enumerate(((1, "+"), (2, "-"))):
            ax = axes[row, j + 2]
            ax.axis("on")
            _show(ax, res.examples[j, idx],
                  f"x {lab} {res.eps:g} sign(w)\npred {classes[int(res.example_predictions[j, idx])]}")
    for u_i, u in enumerate(universal[:1]):
        ax = axes[1, u_i]
        ax.axis("on")
        _show(ax, u.perturbation, f"universal -> {classes[u.target]}\nfools {u.fooling_rate:.0%}",
              signed=True)
    fig.tight_layout()
    return fig


def class_sweep_figure(sweeps: Mapping[str, ClassSweep], classes: Sequence[str]) -> Figure:
    """One row per model: the input made into every class, with the budget needed."""
    names = list(sweeps)
    k = max(int(s.targets.numel()) for s in sweeps.values())
    fig, axes = plt.subplots(len(names), k, figsize=(1.15 * k, 1.6 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        sw = sweeps[name]
        for j in range(k):
            ax = axes[r, j]
            if j >= sw.targets.numel():
                ax.axis("off")
                continue
            e = float(sw.eps_needed[j])
            lab = "clean" if e == 0 else ("failed" if np.isnan(e) else f"eps {e:g}")
            ok = bool(sw.success[j])
            _show(ax, sw.images[j], f"-> {classes[int(sw.targets[j])]}{'' if ok else ' x'}\n{lab}, "
                  f"{float(sw.target_confidence[j]):.0%}")
        axes[r, 0].set_ylabel(name, fontsize=8)
        axes[r, 0].yaxis.set_visible(True)
    fig.tight_layout()
    return fig


def gradient_ascent_figure(ga: GradientAscent, classes: Sequence[str], title: str = "") -> Figure:
    """Frames of gradient ascent on ``log p(target)`` and the total pixel difference."""
    f = ga.frames.shape[0]
    fig, axes = plt.subplots(1, f + 1, figsize=(1.5 * (f + 1), 2.2))
    for i in range(f):
        _show(axes[i], ga.frames[i], f"step {int(ga.steps_at[i])}\n{classes[int(ga.predictions[i])]}, "
              f"p({classes[ga.target]}) {float(ga.target_prob[i]):.0%}")
    _show(axes[f], ga.difference, "difference\n(last - first)", signed=True)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def fgsm_rows_figure(rows: Sequence[FGSMRow], published: Mapping[str, Mapping[str, float]]) -> Figure:
    """Error rate and mean confidence on mistakes, ours (solid) next to published (hatched)."""
    labels, err, conf, kind = [], [], [], []
    for r in rows:
        labels.append(f"{r.model}\n(ours)")
        err.append(r.adv_error_rate)
        conf.append(r.mean_confidence_adv_mistakes or 0.0)
        kind.append(False)
    for name, p in published.items():
        labels.append(f"{name}\n(published)")
        err.append(p["adv_error_rate"])
        conf.append(p["mean_confidence_adv_mistakes"])
        kind.append(True)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(1.25 * len(labels) + 1.5, 3.4))
    for i in range(len(labels)):
        h = "//" if kind[i] else None
        ax.bar(x[i] - 0.2, 100 * err[i], 0.4, color="tab:red", hatch=h, alpha=0.85,
               label="error rate" if i == 0 else None)
        ax.bar(x[i] + 0.2, 100 * conf[i], 0.4, color="tab:blue", hatch=h, alpha=0.85,
               label="confidence on mistakes" if i == 0 else None)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def noise_figure(results: Mapping[str, NoiseResult], classes: Sequence[str]) -> Figure:
    """Share of noise per class at each noise level (one panel per model), and FGSM success."""
    names = list(results)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.6 * (len(names) + 1), 3.2),
                             squeeze=False)
    k = len(classes)
    for ax, name in zip(axes[0], names, strict=False):
        res = results[name]
        w = 0.8 / max(1, len(res.levels))
        for i, lv in enumerate(res.levels):
            ax.bar(np.arange(k) + (i - (len(res.levels) - 1) / 2) * w, 100 * lv.class_share.numpy(),
                   w, label=f"sigma {lv.sigma:g} (L2 {lv.mean_l2:.1f})")
        ax.set_xticks(np.arange(k))
        ax.set_xticklabels(classes, fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("% of noise samples")
        ax.legend(fontsize=6)
    ax = axes[0, -1]
    for j, name in enumerate(names):
        fs = results[name].fgsm_success
        if fs is not None:
            ax.plot(np.arange(k), 100 * fs.numpy(), marker="o", color=_COLORS[j % 10], label=name)
    ax.set_xticks(np.arange(k))
    ax.set_xticklabels(classes, fontsize=7)
    ax.set_ylim(-3, 103)
    ax.set_title("one targeted FGSM step from noise", fontsize=9)
    ax.set_ylabel("% reaching the target")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def subspace_figure(res: SubspaceResult, title: str = "") -> Figure:
    """Histogram of adversarial (and transferring) orthogonal directions per example."""
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    top = max(1, int(res.n_adversarial.max()) if res.n else 1)
    bins: Any = np.arange(0, top + 2) - 0.5 if top < 40 else 30
    ax.hist(res.n_adversarial.numpy(), bins=bins, alpha=0.7, label="adversarial directions")
    if res.n_transfer is not None:
        ax.hist(res.n_transfer.numpy(), bins=bins, alpha=0.6, label="of which transfer")
    ax.axvline(res.mean_adversarial, color="k", ls="--", lw=1,
               label=f"mean {res.mean_adversarial:.1f}")
    ax.set_xlabel(f"orthogonal directions (L2 eps = {res.eps:g})")
    ax.set_ylabel("examples")
    ax.set_title(title or f"GAAS on {res.n} examples", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def generative_figure(res: GenerativeComparison) -> Figure:
    """Densities of both mixtures over the data histogram, and their posteriors ``p(y|x)``."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    d = res.data.numpy()
    lim = float(np.abs(d).max()) * 1.2
    near = (res.grid.abs() <= lim).numpy()
    g = res.grid.numpy()
    axes[0].hist(d, bins=80, density=True, color="lightgrey", label="data")
    axes[0].plot(g[near], res.density_gaussian.numpy()[near], label="mixture of 2 Gaussians")
    axes[0].plot(g[near], res.density_laplace.numpy()[near], label="mixture of 2 Laplacians")
    axes[0].set_title(f"p(x): mean log-likelihood {res.gaussian.mean_log_likelihood:.3f} vs "
                      f"{res.laplace.mean_log_likelihood:.3f}", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].plot(g, res.posterior_gaussian.numpy(), label="Gaussians")
    axes[1].plot(g, res.posterior_laplace.numpy(), label="Laplacians")
    axes[1].axvspan(-lim / 1.2, lim / 1.2, color="lightgrey", alpha=0.5, label="data range")
    axes[1].set_ylim(-0.03, 1.03)
    axes[1].set_xlabel("x")
    axes[1].set_title("posterior p(y = right component | x)", fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def model_based_figure(res: ModelBasedResult, fn=None) -> Figure:  # type: ignore[no-untyped-def]
    """2-D inputs: the true function and the regressor over the search box, optima marked."""
    if res.dim != 2 or fn is None:
        fig, ax = plt.subplots(figsize=(4, 3.2))
        ax.scatter(res.true.numpy(), res.predicted.numpy())
        ax.axline((0, 0), slope=1, color="grey", ls=":")
        ax.set_xlabel("true value at optimum")
        ax.set_ylabel("predicted value")
        fig.tight_layout()
        return fig
    b = res.search_box
    s = torch.linspace(-b, b, 121)
    yy, xx = torch.meshgrid(s, s, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    with torch.no_grad():
        pred = res.regressor(pts.to(next(res.regressor.parameters()).dtype)).reshape(121, 121)
    true = fn(pts).reshape(121, 121)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    vmin = float(min(true.min(), pred.min()))
    vmax = float(max(true.max(), pred.max()))
    for ax, z, title in ((axes[0], true, "true function"), (axes[1], pred, "learned regressor")):
        im = ax.imshow(z.numpy(), origin="lower", extent=(-b, b, -b, b), vmin=vmin, vmax=vmax,
                       cmap="viridis")
        ax.add_patch(Rectangle((-res.data_box, -res.data_box), 2 * res.data_box, 2 * res.data_box,
                               fill=False, ec="white", ls="--", lw=1))
        o = res.optima.numpy()
        ax.scatter(o[:, 0], o[:, 1], c="red", marker="x", s=30, label="optima of the regressor")
        ax.set_title(title, fontsize=9)
    axes[1].legend(fontsize=7, loc="lower left")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.85)
    return fig


# ============================================================================= one experiment's figures
# (an :class:`~advlab.experiments.analysis.AnalysisRun` in, ``{figure name: Figure}`` out)

#: the published FGSM rows drawn next to ours in the RBF figure
_RBF_PUBLISHED = ("shallow RBF network", "shallow softmax")


def _class_sweep_figures(run: ClassSweepRun) -> dict[str, Figure]:
    title = f"CNN: gradient ascent on log p({run.classes[run.target]} | x)"
    return {"sweep": class_sweep_figure(run.sweeps, run.classes),
            "ascent": gradient_ascent_figure(run.ascent, run.classes, title)}


def _rbf_figures(run: RBFRun) -> dict[str, Figure]:
    published = {k: PUBLISHED_FGSM[k] for k in _RBF_PUBLISHED}
    return {"bars": fgsm_rows_figure(run.rows, published)}


def _subspace_figures(run: SubspaceRun) -> dict[str, Figure]:
    title = f"GAAS on {run.result.n} test images, transfer to a second CNN"
    return {"hist": subspace_figure(run.result, title)}


_FIGURES: dict[type, Callable[[Any], dict[str, Figure]]] = {
    CrossSectionsRun: lambda r: {"cross": cross_sections_figure(r.sections, r.titles, r.classes)},
    DecisionMapsRun: lambda r: {k: decision_maps_figure(m, r.classes) for k, m in r.maps.items()},
    SameNormRun: lambda r: {"same_norm": same_norm_figure(r.result, r.classes)},
    LinearModelsRun: lambda r: {"logistic": logistic_sign_figure(r.logistic, r.classes,
                                                                 universal=r.universal)},
    ClassSweepRun: _class_sweep_figures,
    RBFRun: _rbf_figures,
    NoiseRun: lambda r: {"noise": noise_figure(r.results, r.classes)},
    SubspaceRun: _subspace_figures,
    GenerativeRun: lambda r: {"mixtures": generative_figure(r.result)},
    ModelBasedRun: lambda r: {"landscape": model_based_figure(r.outside, mean_sine)},
}


def analysis_figures(run: AnalysisRun) -> dict[str, Figure]:
    """The figures of one analysis experiment (:mod:`advlab.experiments.analysis`), by name.

    Args:
        run: what a ``run_*`` function of :mod:`advlab.experiments.analysis` returned.

    Returns:
        ``{figure name: Figure}`` in the order the report shows them.

    Raises:
        TypeError: ``run`` is not one of the analysis experiments' results.
    """
    import importlib

    for module in FIGURE_MODULES:
        importlib.import_module(module)
    draw = _FIGURES.get(type(run))
    if draw is None:
        raise TypeError(f"no figures for {type(run).__name__}; expected one of "
                        f"{', '.join(t.__name__ for t in _FIGURES)}")
    return draw(run)


#: figure modules that add drawers with :func:`register_figures` (imported by
#: :func:`analysis_figures`), one per experiment module of
#: :data:`advlab.experiments.analysis.ANALYSIS_MODULES`
FIGURE_MODULES = (
    "advlab.reporting.figures_photo_attacks",
    "advlab.reporting.figures_photo_maps",
    "advlab.reporting.figures_detectors",
    "advlab.reporting.figures_robust_sweep",
    "advlab.reporting.figures_claims",
    "advlab.reporting.figures_spam",
    "advlab.reporting.figures_text",
)


def register_figures(run_type: type, draw: Callable[[Any], dict[str, Figure]]) -> None:
    """Draw the results of type ``run_type`` with ``draw`` (``run -> {name: Figure}``).

    Raises:
        ValueError: ``run_type`` has a drawer already.
    """
    if run_type in _FIGURES:
        raise ValueError(f"{run_type.__name__} has figures registered already")
    _FIGURES[run_type] = draw

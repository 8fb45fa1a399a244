"""Figures of :mod:`advlab.experiments.photo_attacks`: photos at display size, perturbations
amplified (the factor is in the title), success against eps."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from advlab.experiments.photo_attacks import ClassDirectionRun, PandaRun, PhotoAttacksRun
from advlab.reporting.figures_analysis import register_figures

__all__ = ["panda_figure", "photo_attacks_figure"]


def _img(ax, t: torch.Tensor, title: str) -> None:  # type: ignore[no-untyped-def]
    ax.imshow(t.detach().permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _amplified(delta: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``delta`` scaled to fill [0, 1] around grey, and the factor used."""
    m = float(delta.abs().max())
    factor = 0.5 / m if m > 0 else 1.0
    return (0.5 + factor * delta).clamp(0, 1), factor


def panda_figure(run: PandaRun) -> Figure:
    """Clean photo, then per attack: amplified perturbation and adversarial photo."""
    names = list(run.adversarial)
    extra = 1 if run.bit_example is not None else 0
    cols = 1 + 2 * len(names) + 2 * extra
    fig, axes = plt.subplots(1, cols, figsize=(2.3 * cols, 2.8))
    c = run.data["clean"]
    _img(axes[0], run.clean, f"clean: {c['class']}\n{c['confidence']:.1%}")
    for j, name in enumerate(names):
        delta, factor = _amplified(run.adversarial[name] - run.clean)
        _img(axes[1 + 2 * j], delta, f"{name} perturbation\n(x{factor:.0f}, grey = 0)")
        _img(axes[2 + 2 * j], run.adversarial[name], run.titles[name].replace(": ", ":\n", 1))
    if run.bit_example is not None and run.bit_clean is not None:
        ex = run.data["eight_bit"]["example"]
        delta, factor = _amplified(run.bit_example - run.bit_clean)
        _img(axes[-2], delta, f"eps 0.49/255 perturbation\n(x{factor:.0f}; rounds to 0)")
        _img(axes[-1], run.bit_example, f"same 8-bit image as the\n{ex['true']}: {ex['adv']['class']}")
    fig.tight_layout()
    return fig


def photo_attacks_figure(run: PhotoAttacksRun) -> Figure:
    """Success rate on the correctly classified photos against eps (in 8-bit levels)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name in dict.fromkeys(r["attack"] for r in run.data["rows"]):
        rows = [r for r in run.data["rows"] if r["attack"] == name]
        ax.plot([r["eps_255"] for r in rows], [100 * r["success"] for r in rows], marker="o", label=name)
    ax.axvline(0.007 * 255, color="grey", ls=":", lw=1)
    ax.text(0.007 * 255, 5, " panda slide\n eps 0.007", fontsize=7, color="grey")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("eps (levels of 1/255, max norm)")
    ax.set_ylabel("fooled (% of correct photos)")
    ax.set_ylim(0, 102)
    ax.legend(fontsize=8)
    ax.set_title(f"{run.data['model']} on {run.data['n_correct']} correctly classified photos", fontsize=9)
    fig.tight_layout()
    return fig


register_figures(PandaRun, lambda run: {"panda": panda_figure(run)})
register_figures(PhotoAttacksRun, lambda run: {"success": photo_attacks_figure(run)})
register_figures(ClassDirectionRun, lambda run: {})

"""Figures of the physical-world and RL-policy sections: data in, ``Figure`` out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["destruction_bars", "transform_strip", "return_curves", "cartpole_frames"]


def destruction_bars(rates: Mapping[str, Mapping[str, float | None]], title: str = "") -> Figure:
    """Grouped bars: destruction rate (y) per transform (groups), one bar per attack.

    Args:
        rates: attack -> transform -> rate (``None``: nothing eligible, drawn as a gap).
        title: figure title.
    """
    attacks = list(rates)
    transforms = list(next(iter(rates.values()))) if rates else []
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    width = 0.8 / max(1, len(attacks))
    xs = np.arange(len(transforms))
    for i, a in enumerate(attacks):
        vals = [rates[a].get(t) for t in transforms]
        ax.bar(xs + (i - (len(attacks) - 1) / 2) * width,
               [100 * v if v is not None else 0 for v in vals], width, label=a)
    ax.set_xticks(xs)
    ax.set_xticklabels(transforms, fontsize=8)
    ax.set_ylabel("destruction rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(attacks))
    ax.set_title(title, fontsize=10)
    return fig


def _gray(ax: Any, t: torch.Tensor, title: str, color: str = "black") -> None:
    a = t.detach().cpu().float().numpy()
    a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    ax.imshow(np.clip(a, 0, 1), cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_title(title, fontsize=8, color=color)
    ax.set_xticks([])
    ax.set_yticks([])


def transform_strip(rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> Figure:
    """One row per example: clean, adversarial, transformed adversarial, with predictions.

    Args:
        rows: dicts with ``label`` (row title), ``x``, ``x_adv``, ``x_t`` (images
            ``(C, H, W)``), ``y``, ``pred``, ``pred_adv``, ``pred_t`` (class indices).
        classes: class names.
    """
    fig, axes = plt.subplots(len(rows), 3, figsize=(5.0, 1.75 * max(1, len(rows))), squeeze=False)
    for i, r in enumerate(rows):
        ok = "green" if r["pred"] == r["y"] else "red"
        _gray(axes[i, 0], r["x"], f"clean: {classes[r['pred']]}", ok)
        ok = "green" if r["pred_adv"] == r["y"] else "red"
        _gray(axes[i, 1], r["x_adv"], f"{r['label']}: {classes[r['pred_adv']]}", ok)
        ok = "green" if r["pred_t"] == r["y"] else "red"
        verdict = "destroyed" if r["pred_t"] == r["y"] else "survives"
        _gray(axes[i, 2], r["x_t"], f"photo: {classes[r['pred_t']]} ({verdict})", ok)
    fig.tight_layout()
    return fig


def return_curves(curves: Sequence[Mapping[str, Any]], title: str = "",
                  unit: str = "in feature std units") -> Figure:
    """Mean episode return vs eps, one panel per norm: attack, noise, transfer.

    Args:
        curves: :meth:`advlab.rl.ReturnCurve.to_dict` outputs.
        title: figure title.
        unit: what eps is measured in (x-axis label).
    """
    fig, axes = plt.subplots(1, max(1, len(curves)), figsize=(3.3 * max(1, len(curves)), 3.1),
                             squeeze=False, sharey=True)
    for ax, c in zip(axes[0], curves, strict=False):
        ax.plot(c["eps"], c["attack_return"], "o-", ms=3, label="FGSM (white box)")
        if "transfer_return" in c:
            ax.plot(c["eps"], c["transfer_return"], "s--", ms=3, label="FGSM transfer (black box)")
        ax.plot(c["eps"], c["noise_return"], "^:", ms=3, label="random noise, same norm")
        ax.set_xlabel(f"eps ({c['norm']}, {unit})", fontsize=8)
        ax.set_xscale("symlog", linthresh=0.01)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mean episode return")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def cartpole_frames(trace: Mapping[str, Sequence[Any]], steps: Sequence[int],
                    action_names: Sequence[str] = ("left", "right")) -> Figure:
    """CartPole states at ``steps`` of a recorded episode with the clean and attacked action.

    Args:
        trace: :class:`advlab.rl.EpisodeStats` ``trace`` (``obs``, ``clean_action``, ``action``).
        steps: step indices to draw.
        action_names: names of the discrete actions.
    """
    steps = [s for s in steps if 0 <= s < len(trace["obs"])]
    fig, axes = plt.subplots(1, max(1, len(steps)), figsize=(2.1 * max(1, len(steps)), 2.3),
                             squeeze=False)
    for ax, s in zip(axes[0], steps, strict=False):
        x, _, th, _ = trace["obs"][s][:4]
        ax.plot([-2.4, 2.4], [0, 0], color="gray", lw=1)
        ax.add_patch(plt.Rectangle((x - 0.25, -0.12), 0.5, 0.24, color="tab:blue"))
        ax.plot([x, x + 1.0 * math.sin(th)], [0.12, 0.12 + 1.0 * math.cos(th)], color="tab:brown", lw=3)
        clean, act = trace["clean_action"][s], trace["action"][s]
        for a, col, y in ((clean, "green", -0.35), (act, "red", -0.6)):
            d = 0.5 if a == 1 else -0.5
            ax.annotate("", xy=(x + d, y), xytext=(x, y),
                        arrowprops={"arrowstyle": "->", "color": col, "lw": 2})
        changed = " (changed)" if clean != act else ""
        ax.set_title(f"t={s}: {action_names[clean]} -> {action_names[act]}{changed}", fontsize=7,
                     color="red" if changed else "black")
        ax.set_xlim(-2.6, 2.6)
        ax.set_ylim(-0.8, 1.3)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.text(0.01, 0.02, "green: action on the clean observation; red: action taken under attack",
             fontsize=7)
    fig.tight_layout()
    return fig

"""Matplotlib figures: data in, ``Figure`` out (no files written here)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from advlab.evaluation.curves import AccuracyCurve  # noqa: E402

__all__ = ["figure_to_png", "figure_to_data_uri", "adversarial_triplet", "accuracy_curves",
           "adversarial_grid"]


def figure_to_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render ``fig`` to PNG bytes and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def figure_to_data_uri(fig: Figure, dpi: int = 110) -> str:
    """Render ``fig`` to a ``data:image/png;base64,...`` URI (for self-contained HTML)."""
    return "data:image/png;base64," + base64.b64encode(figure_to_png(fig, dpi)).decode("ascii")


def _img(t: torch.Tensor) -> np.ndarray:
    a = t.detach().cpu().float().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))


def _show(ax, t: torch.Tensor, title: str = "", signed: bool = False,  # type: ignore[no-untyped-def]
          fontsize: int = 9) -> None:
    """Draw one image (``signed``: a perturbation on a diverging map) without ticks."""
    a = _img(t)
    if signed:
        m = float(np.abs(a).max()) or 1.0
        ax.imshow(a if a.ndim == 2 else a.mean(-1), cmap="seismic", vmin=-m, vmax=m)
    else:
        ax.imshow(np.clip(a, 0, 1), cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def adversarial_triplet(
    x: torch.Tensor, x_adv: torch.Tensor, clean_label: str, clean_conf: float,
    adv_label: str, adv_conf: float, eps: float,
) -> Figure:
    """The panda-to-gibbon layout: clean input + eps * sign(grad) = adversarial input."""
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.9))
    _show(axes[0], x, f"x\n\"{clean_label}\" {clean_conf:.1%} confidence")
    _show(axes[1], (x_adv - x) / max(eps, 1e-12), f"sign(grad) (scaled by eps={eps:g})", signed=True)
    _show(axes[2], x_adv, f"x + eps sign(grad)\n\"{adv_label}\" {adv_conf:.1%} confidence")
    fig.text(0.355, 0.45, "+", fontsize=18, ha="center")
    fig.text(0.655, 0.45, "=", fontsize=18, ha="center")
    return fig


def accuracy_curves(curves: Sequence[AccuracyCurve], labels: Sequence[str] | None = None,
                    title: str = "Accuracy vs perturbation budget") -> Figure:
    """Accuracy (y) against ``eps`` (x), one line per curve."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, c in enumerate(curves):
        lab = labels[i] if labels else f"{c.attack}"
        ax.plot(c.eps, [100 * a for a in c.accuracy], marker="o", ms=3, label=lab)
    ax.set_xlabel(f"eps ({curves[0].norm if curves else ''})")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def adversarial_grid(
    x: torch.Tensor, x_adv: torch.Tensor, clean_pred: Sequence[int], clean_conf: Sequence[float],
    adv_pred: Sequence[int], adv_conf: Sequence[float], classes: Sequence[str],
    labels: Sequence[int] | None = None, max_items: int = 8,
) -> Figure:
    """Rows: clean / perturbation / adversarial, with predicted class and confidence."""
    k = min(max_items, x.shape[0])
    fig, axes = plt.subplots(3, max(k, 1), figsize=(1.35 * max(k, 1), 4.4), squeeze=False)
    for i in range(k):
        tl = f" (y={classes[labels[i]]})" if labels is not None else ""
        _show(axes[0, i], x[i], f"{classes[clean_pred[i]]} {clean_conf[i]:.0%}{tl}")
        _show(axes[1, i], x_adv[i] - x[i], "perturbation", signed=True)
        _show(axes[2, i], x_adv[i], f"{classes[adv_pred[i]]} {adv_conf[i]:.0%}")
    for ax in axes.flat[3 * k:]:
        ax.axis("off")
    axes[0, 0].set_ylabel("clean")
    axes[2, 0].set_ylabel("adversarial")
    fig.tight_layout()
    return fig

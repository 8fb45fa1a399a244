"""The one-file robustness report (``advlab eval --html``, ``advlab.evaluate(...).to_html``).

:class:`RobustnessReport` is :class:`~advlab.evaluation.report.RobustnessResult` plus
:meth:`~RobustnessReport.to_html`: one self-contained HTML file (figures inline as
base64 PNG) with the model, data and threat model, clean and robust accuracy after
every attack, the accuracy-vs-eps curve, clean / perturbation / adversarial examples,
every masking-check warning, the exact settings and the command line.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from advlab.attacks import Attack  # noqa: E402
from advlab.evaluation.report import RobustnessResult, robustness_evaluation  # noqa: E402
from advlab.reporting.figures import figure_to_data_uri  # noqa: E402
from advlab.reporting.html import _env, _pct  # noqa: E402
from advlab.threat import ThreatModel  # noqa: E402

__all__ = ["RobustnessReport", "evaluate", "render_robustness_html", "examples_figure",
           "curve_figure"]

#: what each masking-check code means, in plain words (the check's own message follows)
PLAIN = {
    "randomized": "The model gives different outputs for the same input, so gradients are noisy "
                  "and the robust accuracy may be too high.",
    "probabilities": "The model outputs probabilities, not logits; attacks on logits are stronger.",
    "log_probabilities": "The model outputs log-probabilities; attacks on logits are stronger.",
    "zero_gradients": "Many inputs have zero gradient: gradient attacks cannot move them, so the "
                      "robust accuracy may be too high.",
    "gradient_mismatch": "The gradient disagrees with how the loss actually changes: gradient "
                         "attacks are misled and the robust accuracy may be too high.",
    "black_box_beats_white_box": "A black-box attack broke points the gradient attacks could not: "
                                 "a typical sign of gradient masking.",
    "outside_threat_model": "An attack returned inputs outside the allowed perturbations; those "
                            "points are not counted as broken.",
    "not_reproducible": "Some adversarial inputs were classified correctly when re-evaluated; "
                        "they are not counted as broken.",
}


def _show(ax: Any, a: np.ndarray, title: str) -> None:
    img = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def amplification(samples: dict[str, Any]) -> float:
    """The factor that makes the largest shown perturbation reach half the grey range."""
    d = (samples["x_adv"] - samples["x"]).abs().max()
    return 1.0 if float(d) <= 0 else float(0.5 / d)


def examples_figure(samples: dict[str, Any], classes: Sequence[str]) -> Figure:
    """Rows: clean (prediction, confidence), amplified perturbation (grey = 0), adversarial."""
    x, xa = samples["x"].float(), samples["x_adv"].float()
    k = int(x.shape[0])
    amp = amplification(samples)
    x4 = x if x.ndim == 4 else x.reshape(k, 1, 1, -1)
    xa4 = xa if xa.ndim == 4 else xa.reshape(k, 1, 1, -1)
    fig, axes = plt.subplots(3, k, figsize=(max(4.0, 1.5 * k), 5.0), squeeze=False)
    for i in range(k):
        lab = classes[samples["labels"][i]]
        cp, ap = classes[samples["clean_pred"][i]], classes[samples["adv_pred"][i]]
        _show(axes[0, i], x4[i].numpy(), f"true: {lab}\npred: {cp} {samples['clean_conf'][i]:.0%}")
        _show(axes[1, i], (0.5 + amp * (xa4[i] - x4[i])).numpy(), f"x{amp:.3g}")
        _show(axes[2, i], xa4[i].numpy(), f"pred: {ap} {samples['adv_conf'][i]:.0%}")
    axes[0, 0].set_ylabel("clean")
    axes[1, 0].set_ylabel("perturbation")
    axes[2, 0].set_ylabel("adversarial")
    fig.tight_layout()
    return fig


def curve_figure(curve: dict[str, Any], eps: float) -> Figure:
    """Worst-case accuracy (y) against eps (x), the evaluated eps marked."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(curve["eps"], [100 * a for a in curve["accuracy"]], marker="o", ms=4)
    ax.axvline(eps, color="#c33", ls="--", lw=1, label=f"evaluated eps = {eps:g}")
    ax.set_xlabel(f"eps ({curve['norm']}, [0, 1] pixel units)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def render_robustness_html(r: RobustnessResult) -> str:
    """The report as an HTML string (figures inline)."""
    from advlab._version import __version__

    uri = figure_to_data_uri
    figs: dict[str, str] = {}
    if r.curve:
        figs["curve"] = uri(curve_figure(r.curve, float(r.threat["eps"])))
    if r.samples:
        figs["examples"] = uri(examples_figure(r.samples, r.classes))
    stage_names = [s["name"] for s in r.stages]
    warnings = [{"code": w.code, "plain": PLAIN.get(w.code, ""), "message": w.message}
                for w in r.warnings]
    env = _env()
    env.filters["pct"] = _pct
    return env.get_template("robustness.html.j2").render(
        r=r, figs=figs, warnings=warnings, version=__version__, stage_names=stage_names,
        amp=amplification(r.samples) if r.samples else None,
        date=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"), isnan=math.isnan,
        breakers=[stage_names[b] if b >= 0 else "" for b in r.samples.get("broken_by", [])])


class RobustnessReport(RobustnessResult):
    """A :class:`RobustnessResult` that also writes itself as one HTML file."""

    @classmethod
    def from_result(cls, result: RobustnessResult) -> RobustnessReport:
        return cls(**{f.name: getattr(result, f.name) for f in fields(result)})

    def to_html(self, path: str | Path | None = None) -> str:
        """The self-contained HTML report; with ``path``, also written there atomically."""
        from advlab.io import atomic_write_text

        html = render_robustness_html(self)
        if path is not None:
            atomic_write_text(Path(path), html)
        return html


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, threat: ThreatModel,
             attacks: str | Sequence[str] | Attack = "standard", device: str | torch.device | None = None,
             **kwargs: Any) -> RobustnessReport:
    """``advlab.evaluate``: see its docstring in :mod:`advlab`."""
    if device is not None:
        dev = torch.device(device)
        model, x, y = model.to(dev), x.to(dev), y.to(dev)
    elif x.device != y.device:
        raise ValueError(f"x is on {x.device} and y on {y.device}: pass device=... or move them")
    return RobustnessReport.from_result(robustness_evaluation(model, x, y, threat, attacks, **kwargs))


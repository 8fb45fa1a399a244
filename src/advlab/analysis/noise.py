"""Noise is classified as something: the rubbish-class experiment.

A classifier with a softmax output must put every input into some class, and a
piecewise-linear network does so confidently far from the data: Goodfellow et
al. report that a CIFAR-10 network calls 70% of Gaussian noise samples "horse".
With per-class sigmoid outputs a class can be absent, so we also report how often
noise makes at least one class "present" (p > 0.5), and how easily one targeted
FGSM step turns noise into each class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from advlab.analysis._common import check_generator, logits_of
from advlab.attacks.pgd import FGSM
from advlab.criteria import TargetedMisclassification
from advlab.threat import ThreatModel
from advlab.validation import eval_mode

__all__ = ["NoiseLevel", "NoiseResult", "gaussian_noise", "noise_classification",
           "targeted_fgsm_from_noise"]


@dataclass
class NoiseLevel:
    """How a model classifies Gaussian noise of one standard deviation.

    Attributes:
        sigma: per-pixel standard deviation before clipping.
        mean_l2: mean L2 norm of ``noise - center`` after clipping.
        class_share: share of samples assigned to each class ``(K,)``.
        top_class: the class that receives most noise; top_share: its share.
        mean_max_confidence: mean probability of the predicted class (softmax, or the
            sigmoid for log-odds models).
        share_any_present: share of samples with at least one per-class sigmoid above 0.5,
            for per-class sigmoid (log-odds) models; ``None`` for softmax models.
    """

    sigma: float
    mean_l2: float
    class_share: torch.Tensor
    top_class: int
    top_share: float
    mean_max_confidence: float
    share_any_present: float | None

    def to_dict(self) -> dict[str, object]:
        return {"sigma": self.sigma, "mean_l2": self.mean_l2,
                "class_share": [round(float(v), 4) for v in self.class_share],
                "top_class": self.top_class, "top_share": self.top_share,
                "mean_max_confidence": self.mean_max_confidence,
                "share_any_present": self.share_any_present}


@dataclass
class NoiseResult:
    """Noise classification at several noise levels, plus targeted FGSM from noise.

    Attributes:
        n: samples per level; center: the mean of the noise; output_kind: the model's.
        levels: one :class:`NoiseLevel` per sigma.
        fgsm_eps: budget of the targeted step (``None`` if not run).
        fgsm_success: per target class, share of noise samples the step sends there.
    """

    n: int
    center: float
    output_kind: str
    levels: list[NoiseLevel]
    fgsm_eps: float | None = None
    fgsm_success: torch.Tensor | None = field(default=None)

    def to_dict(self) -> dict[str, object]:
        return {"n": self.n, "center": self.center, "output_kind": self.output_kind,
                "levels": [lv.to_dict() for lv in self.levels], "fgsm_eps": self.fgsm_eps,
                "fgsm_success": None if self.fgsm_success is None
                else [float(v) for v in self.fgsm_success],
                "fgsm_mean_success": None if self.fgsm_success is None
                else float(self.fgsm_success.mean())}


def gaussian_noise(
    n: int, shape: Sequence[int], sigma: float, *, center: float = 0.5,
    bounds: tuple[float, float] | None = (0.0, 1.0), generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` images ``clip(center + sigma * N(0, I))`` of shape ``shape``."""
    check_generator(generator)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    z = center + sigma * torch.randn((n, *shape), generator=generator)
    return z.clamp(*bounds) if bounds is not None else z


def _level(model: nn.Module, z: torch.Tensor, sigma: float, center: float) -> NoiseLevel:
    logits = logits_of(model, z)
    k = logits.shape[1]
    pred = logits.argmax(1)
    share = torch.bincount(pred, minlength=k).float() / max(1, z.shape[0])
    logodds = getattr(model, "output_kind", "logits") == "logodds"
    if logodds:
        p = torch.sigmoid(logits)
        conf = p.amax(dim=1)
        present: float | None = float((p > 0.5).any(dim=1).float().mean())
    else:
        conf = torch.softmax(logits, dim=1).amax(dim=1)
        present = None
    top = int(share.argmax())
    return NoiseLevel(sigma=float(sigma), mean_l2=float((z - center).flatten(1).norm(dim=1).mean()),
                      class_share=share, top_class=top, top_share=float(share[top]),
                      mean_max_confidence=float(conf.mean()), share_any_present=present)


def targeted_fgsm_from_noise(
    model: nn.Module, noise: torch.Tensor, eps: float = 0.25, *,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """One targeted FGSM step from every noise sample to every class.

    Returns:
        Per class, the share of noise samples predicted as that class after the step.

    References:
        Goodfellow, Shlens & Szegedy, ICLR 2015 (rubbish-class examples, section 10).
    """
    with eval_mode(model, "analysis"):
        k = int(logits_of(model, noise[:1]).shape[1])
    out = torch.zeros(k)
    for c in range(k):
        r = FGSM()(model, noise, TargetedMisclassification(torch.full((noise.shape[0],), c)),
                   threat=ThreatModel("linf", eps, bounds))
        out[c] = r.success.float().mean()
    return out


def noise_classification(
    model: nn.Module,
    shape: Sequence[int],
    *,
    sigmas: Sequence[float] = (0.1, 0.3, 1.0),
    n: int = 1000,
    center: float = 0.5,
    bounds: tuple[float, float] = (0.0, 1.0),
    fgsm_eps: float | None = 0.25,
    fgsm_n: int | None = 200,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Classify Gaussian noise of several sizes; optionally attack it towards every class.

    Args:
        model: classifier returning logits (softmax or per-class log-odds).
        shape: one input's shape ``(C, H, W)``.
        sigmas: per-pixel standard deviations (noise is clipped into ``bounds``).
        n: samples per level.
        center: mean of the noise (mid-grey by default, so clipping is symmetric).
        bounds: valid input box.
        fgsm_eps: budget of a targeted FGSM step from the last level's noise to every
            class (``None`` skips it).
        fgsm_n: attack only the first ``fgsm_n`` samples of that level (``None``: all).
        generator: for the noise.

    Returns:
        :class:`NoiseResult`.

    References:
        Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
        ICLR 2015, section 10 (rubbish-class examples); Nguyen, Yosinski & Clune, "Deep
        Neural Networks are Easily Fooled", CVPR 2015.
    """
    if not sigmas:
        raise ValueError("give at least one sigma")
    levels, last = [], None
    with eval_mode(model, "analysis"):
        for s in sigmas:
            last = gaussian_noise(n, shape, s, center=center, bounds=bounds, generator=generator)
            levels.append(_level(model, last, s, center))
    res = NoiseResult(n=n, center=center, output_kind=getattr(model, "output_kind", "logits"),
                      levels=levels)
    if fgsm_eps is not None and last is not None:
        res.fgsm_eps = float(fgsm_eps)
        res.fgsm_success = targeted_fgsm_from_noise(model, last[:fgsm_n], fgsm_eps, bounds=bounds)
    return res

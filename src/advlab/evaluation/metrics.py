"""Clean and robust accuracy, success rate, confidence on mistakes; JSON in RobustBench style."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack
from advlab.criteria import Misclassification
from advlab.models.zoo import confidence
from advlab.threat import ThreatModel
from advlab.validation import check_inputs, check_logits, eval_mode

__all__ = ["EvalResult", "evaluate", "predict"]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in batches (no gradients)."""
    check_batch_size(batch_size)
    outs = [model(x[s:s + batch_size]) for s in range(0, x.shape[0], batch_size)]
    return torch.cat(outs) if outs else x.new_zeros((0, 0))


def check_batch_size(batch_size: object) -> None:
    """Raise ``ValueError`` unless ``batch_size`` is a positive integer (``--batch-size``)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")


def _mean(t: torch.Tensor) -> float:
    return float(t.float().mean()) if t.numel() else math.nan


@dataclass
class EvalResult:
    """Result of :func:`evaluate`.

    ``robust_acc`` counts a point as robust when it is classified correctly both
    clean and after the attack (RobustBench convention). For an unbounded
    (minimum-norm) attack, an adversarial example counts only if it lies inside
    the threat model's ball. ``adv_error_rate`` is
    the error rate on the adversarial examples of *all* points, the figure that
    Goodfellow et al. (2014) report. ``attack_success_rate`` is measured on the
    points the model classifies correctly.
    """

    clean_acc: float
    robust_acc: float | None
    attack_success_rate: float | None
    adv_error_rate: float | None
    mean_confidence_adv_mistakes: float | None
    mean_confidence_clean: float
    n_examples: int
    threat: dict[str, Any] | None
    attack: dict[str, Any] | None
    seed: int | None
    seconds: float
    passes: int
    clean_correct: torch.Tensor = field(repr=False)
    robust_correct: torch.Tensor | None = field(repr=False, default=None)
    x_adv: torch.Tensor | None = field(repr=False, default=None)
    adv_logits: torch.Tensor | None = field(repr=False, default=None)

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "clean_acc": self.clean_acc,
            "robust_acc": self.robust_acc,
            "attack_success_rate": self.attack_success_rate,
            "adv_error_rate": self.adv_error_rate,
            "mean_confidence_adv_mistakes": self.mean_confidence_adv_mistakes,
            "mean_confidence_clean": self.mean_confidence_clean,
            "n_examples": self.n_examples,
            "threat_model": self.threat["norm"] if self.threat else None,
            "eps": self.threat["eps"] if self.threat else None,
            "threat": self.threat,
            "attack": self.attack,
            "seed": self.seed,
            "seconds": self.seconds,
            "passes": self.passes,
        }
        if per_sample:
            d["clean_correct"] = self.clean_correct.int().tolist()
            if self.robust_correct is not None:
                d["robust_correct"] = self.robust_correct.int().tolist()
        return d


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    attack: Attack | None = None,
    threat: ThreatModel | None = None,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    seed: int | None = None,
    keep_adversarials: bool = False,
) -> EvalResult:
    """Clean accuracy and, with an attack, robust accuracy and related figures.

    Args:
        model: classifier returning logits on inputs in ``threat.bounds``.
        x: inputs ``(N, ...)``; labels: int64 ``(N,)``.
        attack: any :class:`~advlab.attacks.Attack`; ``None`` for clean accuracy only.
        threat: the threat model (required with ``attack``).
        generator: for attacks with randomness.
        batch_size: attack/eval batch size.
        seed: recorded in the result (the caller seeds ``generator``).
        keep_adversarials: keep ``x_adv`` and its logits in the result.
    """
    bounds = threat.bounds if threat is not None else (0.0, 1.0)
    check_batch_size(batch_size)
    check_inputs(model, x, bounds)
    crit = Misclassification(labels)
    t0 = time.perf_counter()
    with eval_mode(model, "evaluation"):
        clean_logits = predict(model, x, batch_size)
        if x.shape[0]:
            check_logits(clean_logits[:2], min(2, x.shape[0]))
        crit.validate(x.shape[0], clean_logits.shape[1] if x.shape[0] else 2)
        clean_correct = clean_logits.argmax(1) == labels
        clean_conf = confidence(model, clean_logits)
    if attack is None:
        return EvalResult(
            clean_acc=_mean(clean_correct), robust_acc=None, attack_success_rate=None,
            adv_error_rate=None, mean_confidence_adv_mistakes=None,
            mean_confidence_clean=_mean(clean_conf), n_examples=int(x.shape[0]), threat=None,
            attack=None, seed=seed, seconds=time.perf_counter() - t0, passes=0,
            clean_correct=clean_correct,
        )
    if threat is None:
        raise ValueError("evaluate() with an attack needs a threat model")
    res = attack(model, x, crit, threat=threat, generator=generator, batch_size=batch_size)
    adv_logits = res.logits
    adv_pred = adv_logits.argmax(1)
    adv_wrong = adv_pred != labels
    if not attack.bounded:  # a minimum-norm attack breaks a point only inside the threat model
        adv_wrong = adv_wrong & threat.contains(res.x_adv, x)
    robust_correct = clean_correct & ~adv_wrong
    conf = confidence(model, adv_logits)
    succ = adv_wrong[clean_correct]
    return EvalResult(
        clean_acc=_mean(clean_correct),
        robust_acc=_mean(robust_correct),
        attack_success_rate=_mean(succ),
        adv_error_rate=_mean(adv_wrong),
        mean_confidence_adv_mistakes=_mean(conf[adv_wrong]),
        mean_confidence_clean=_mean(clean_conf),
        n_examples=int(x.shape[0]),
        threat=threat.to_dict(),
        attack=attack.settings(),
        seed=seed,
        seconds=time.perf_counter() - t0,
        passes=int(res.passes.sum()),
        clean_correct=clean_correct,
        robust_correct=robust_correct,
        x_adv=res.x_adv if keep_adversarials else None,
        adv_logits=adv_logits if keep_adversarials else None,
    )

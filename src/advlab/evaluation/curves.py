"""Accuracy as a function of the perturbation budget ``eps``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from advlab.attacks.base import Attack
from advlab.attacks.engine import input_grad
from advlab.attacks.pgd import PGD
from advlab.criteria import Criterion, Misclassification
from advlab.evaluation.metrics import predict
from advlab.threat import ThreatModel
from advlab.validation import check_inputs, check_logits, eval_mode

__all__ = ["AccuracyCurve", "accuracy_vs_eps"]


@dataclass
class AccuracyCurve:
    """Robust accuracy per ``eps`` for one attack (``eps[0]`` may be 0: clean accuracy)."""

    attack: str
    norm: str
    eps: list[float]
    accuracy: list[float]
    passes: int

    def to_dict(self) -> dict[str, object]:
        return {"attack": self.attack, "norm": self.norm, "eps": self.eps,
                "accuracy": self.accuracy, "passes": self.passes}


def _single_step(attack: Attack) -> bool:
    return (isinstance(attack, PGD) and attack.steps == 1 and not attack.random_init
            and attack.restarts == 1)


def accuracy_vs_eps(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    attack: Attack,
    eps: Sequence[float],
    norm: str = "linf",
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    name: str | None = None,
) -> AccuracyCurve:
    """Robust accuracy of ``model`` under ``attack`` for every budget in ``eps``.

    A point counts as robust when it is classified correctly both clean and
    after the attack. For a single-step attack without random start (FGSM/FGM) the gradient does
    not depend on ``eps``: it is computed once and every budget costs one extra
    forward pass. An unbounded (minimum-norm) attack (FMN, DDN, FAB, CW, DeepFool) runs
    once: a point is broken at ``eps`` when its smallest adversarial perturbation
    found has norm at most ``eps``. Other attacks run once per budget.
    """
    eps = [float(e) for e in eps]
    threats = [ThreatModel(norm, e, bounds) for e in eps]
    check_inputs(model, x, bounds)
    crit = Misclassification(labels)
    accs: list[float] = []
    passes = 0
    n = max(1, x.shape[0])
    if _single_step(attack):
        assert isinstance(attack, PGD)
        correct = torch.zeros(len(eps), dtype=torch.long)
        strategy = threats[0].strategy
        with eval_mode(model, "evaluation"):
            for s in range(0, x.shape[0], batch_size):
                xb, cb = x[s:s + batch_size], crit[slice(s, s + batch_size)]
                def objective(z: torch.Tensor, cb: Criterion = cb, m: int = xb.shape[0]) -> torch.Tensor:
                    check_logits(z.detach(), m)
                    cb.validate(m, z.shape[1])
                    return cb.loss(z, attack.loss)

                logits, _, g = input_grad(model, xb, objective)
                clean_ok = logits.argmax(1) == cb.classes
                passes += xb.shape[0]
                direction = strategy.normalize_grad(g)
                with torch.no_grad():
                    for i, t in enumerate(threats):
                        xa = t.project(xb + t.eps * direction, xb)
                        adv_ok = model(xa).argmax(1) == cb.classes
                        correct[i] += int((clean_ok & adv_ok).sum())
        accs = [int(c) / n for c in correct]
    elif not attack.bounded and threats:
        accs, passes = _minimum_norm_curve(model, x, labels, attack, threats, generator, batch_size)
    else:
        with eval_mode(model, "evaluation"):
            clean_ok = predict(model, x, batch_size).argmax(1) == labels
        for t in threats:
            if t.eps == 0:
                accs.append(float(clean_ok.float().mean()) if x.shape[0] else float("nan"))
                continue
            r = attack(model, x, crit, threat=t, generator=generator, batch_size=batch_size)
            passes += int(r.passes.sum())
            accs.append(float((clean_ok & (r.logits.argmax(1) == labels)).float().mean()))
    return AccuracyCurve(attack=name or type(attack).__name__, norm=threats[0].norm if threats
                         else norm, eps=eps, accuracy=accs, passes=passes)


def _minimum_norm_curve(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, attack: Attack,
                        threats: list[ThreatModel], generator: torch.Generator | None,
                        batch_size: int) -> tuple[list[float], int]:
    """The whole curve from one run of a minimum-norm attack: broken at eps iff distance <= eps."""
    largest = max(threats, key=lambda t: t.eps)
    with eval_mode(model, "evaluation"):
        clean_ok = predict(model, x, batch_size).argmax(1) == labels
    r = attack(model, x, Misclassification(labels), threat=largest, generator=generator,
               batch_size=batch_size)
    n = max(1, x.shape[0])
    accs = []
    for t in threats:
        broken = r.success & (r.distance <= t.eps * (1 + 1e-6))
        accs.append(int((clean_ok & ~broken).sum()) / n)
    return accs, int(r.passes.sum())

"""Auto-PGD (APGD): step-size-free PGD with momentum and checkpoints, and its targeted version.

One loop serves every norm through the :class:`~advlab.threat.Norm` strategy
(the paper defines Linf and L2; L1 here uses the same schedule with the
strategy's sparse steepest-ascent step and exact L1 projection).
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, require_int, require_loss, store_settings
from advlab.attacks.engine import (
    Evaluation,
    LossObjective,
    StepRule,
    Tracker,
    _bcast,
    iterate,
    random_start,
    run_restarts,
)
from advlab.criteria import Criterion, TargetedMisclassification
from advlab.threat import ThreatModel

__all__ = ["APGD", "APGDT", "APGDStep", "apgd_checkpoints"]


def apgd_checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD may halve its step: ``w_j = ceil(p_j * steps)``.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``
    (Croce & Hein 2020, Sec. 3.2), in AutoAttack's integer form (first period
    ``int(0.22 steps)``, each next one ``int(0.03 steps)`` shorter, at least
    ``int(0.06 steps)``), which avoids rounding surprises such as 0.57 * 100 > 57.
    """
    period = max(int(0.22 * steps), 1)
    decr = max(int(0.03 * steps), 1)
    shortest = max(int(0.06 * steps), 1)
    out = []
    cp = period
    while cp <= steps:
        out.append(cp)
        period = max(period - decr, shortest)
        cp += period
    return out


class APGDStep(StepRule):
    """APGD's step rule: momentum step, per-sample step size halved at checkpoints (Croce & Hein 2020).

    ``z = P(x_k + eta dir(grad))``, ``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))``
    (``alpha = 1`` on the first step). At the checkpoints of :func:`apgd_checkpoints`
    a sample halves ``eta`` and restarts from its best point if fewer than a
    fraction ``rho`` of the steps since the last checkpoint increased its
    objective, or if its step was not halved at the last checkpoint and its best
    objective has not improved since.
    """

    def __init__(self, eps: float, steps: int, rho: float, momentum: float) -> None:
        self.eps = eps
        self.steps = steps
        self.rho = rho
        self.momentum = momentum
        self.checkpoints = set(apgd_checkpoints(steps))
        self.last_cp = 0

    def _start(self, xa: torch.Tensor, obj: torch.Tensor, grad: torch.Tensor) -> None:
        n, dev = xa.shape[0], xa.device
        self.eta = torch.full((n,), 2.0 * self.eps, dtype=xa.dtype, device=dev)
        self.x_max, self.obj_max, self.grad_max = xa.clone(), obj.clone(), grad.clone()
        self.x_prev = xa.clone()
        self.history = torch.full((self.steps + 1, n), float("nan"), dtype=xa.dtype, device=dev)
        self.history[0] = obj
        self.obj_last_check = self.obj_max.clone()
        self.reduced_last_check = torch.ones(n, dtype=torch.bool, device=dev)

    def observe(self, t: int, xa: torch.Tensor, ev: Evaluation) -> tuple[torch.Tensor, torch.Tensor]:
        obj, grad = ev.obj, ev.grad
        assert grad is not None
        if t == 0:
            self._start(xa, obj, grad)
            return xa, grad
        self.history[t] = obj
        with torch.no_grad():
            improved = obj > self.obj_max
            self.x_max[improved] = xa[improved]
            self.obj_max[improved] = obj[improved]
            self.grad_max[improved] = grad[improved]
        if t in self.checkpoints:
            h = self.history[self.last_cp:t + 1]
            increases = (h[1:] > h[:-1]).sum(0)
            cond1 = increases.to(xa.dtype) <= self.rho * (t - self.last_cp)  # as AutoAttack
            cond2 = ~self.reduced_last_check & (self.obj_last_check >= self.obj_max)
            halve = cond1 | cond2
            self.reduced_last_check = halve
            self.obj_last_check = self.obj_max.clone()
            if bool(halve.any()):
                self.eta = torch.where(halve, self.eta / 2, self.eta)
                xa = torch.where(_bcast(halve, xa), self.x_max, xa)
                grad = torch.where(_bcast(halve, grad), self.grad_max, grad)
            self.last_cp = t
        return xa, grad

    def keep(self, mask: torch.Tensor) -> None:
        for name in ("eta", "x_max", "obj_max", "grad_max", "x_prev", "obj_last_check",
                     "reduced_last_check"):
            setattr(self, name, getattr(self, name)[mask])
        self.history = self.history[:, mask]

    def step(self, t: int, xa: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor,
             threat: ThreatModel) -> torch.Tensor:
        norm = threat.strategy
        lo, hi = threat.bounds

        def project(z: torch.Tensor) -> torch.Tensor:
            return torch.clamp(x0 + norm.project(z - x0, self.eps), lo, hi)

        with torch.no_grad():
            alpha = self.momentum if t > 0 else 1.0
            z = project(xa + _bcast(self.eta, xa) * norm.normalize_grad(grad))
            x_new = project(xa + alpha * (z - xa) + (1 - alpha) * (xa - self.x_prev))
        self.x_prev = xa
        return x_new


class APGD(Attack):
    """APGD (Croce & Hein 2020) with the cross-entropy, DLR or CW loss.

    Starting from ``eta = 2 * eps``, each iteration takes the steepest-ascent
    step ``z = P(x_k + eta * dir(grad))`` and moves with momentum
    ``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))``
    (``alpha = 0.75``). At the checkpoints of :func:`apgd_checkpoints` a sample
    halves its step and restarts from its best point if fewer than a fraction
    ``rho`` of the steps since the last checkpoint increased its loss, or if
    its step was not halved at the last checkpoint and its best loss has not
    improved since. Restarts run only on samples not broken yet.

    Args:
        steps: iterations per restart (the paper's 100); each costs one
            forward+backward pass, plus one for the starting point.
        restarts: runs; later runs start at new random points and attack only
            unbroken samples.
        loss: ``"ce"``, ``"dlr"`` or ``"cw"``; the criterion decides targeted or not.
        rho: the checkpoint's fraction of successful steps (0.75).
        momentum: ``alpha`` above (0.75).
        random_init: start from a random point in the ball (otherwise the clean input).
        early_stop: stop attacking a sample once it is successful.

    Returns:
        :class:`~advlab.attacks.base.AttackResult` with the best iterate per
        sample (a successful one if any, else the one of highest loss).

    References:
        Croce & Hein, "Reliable evaluation of adversarial robustness with an
        ensemble of diverse parameter-free attacks", ICML 2020 (arXiv:2003.01690).
    """

    def __init__(self, steps: int = 100, restarts: int = 1, loss: str = "ce", rho: float = 0.75,
                 momentum: float = 0.75, random_init: bool = True, early_stop: bool = False) -> None:
        store_settings(self, locals())

    def _check_settings(self) -> None:
        require_int("steps", self.steps, 1)
        require_int("restarts", self.restarts, 1)
        require_loss(self.loss)
        if not 0 < self.rho <= 1:
            raise ValueError(f"rho must lie in (0, 1], got {self.rho}")
        if not 0 < self.momentum <= 1:
            raise ValueError(f"momentum must lie in (0, 1], got {self.momentum}")

    def _single(self, model: nn.Module, x: torch.Tensor, objective: LossObjective,
                threat: ThreatModel, generator: torch.Generator | None, tracker: Tracker,
                idx: torch.Tensor | None, random: bool) -> None:
        """One APGD run on the samples ``idx`` of the tracker's batch (``None``: all)."""
        x0 = x if idx is None else x[idx]
        start = random_start(x0, threat, generator) if random and threat.eps > 0 else x0.clone()
        rule = APGDStep(threat.eps, self.steps, float(self.rho), float(self.momentum))
        iterate(model, x0, objective, threat, rule, tracker, evaluations=self.steps + 1,
                start=start, idx=idx, early_stop=self.early_stop, final_forward=False)

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        objective = LossObjective(criterion, self.loss)
        tracker = Tracker(x, objective.initial_keys(x.shape[0], x))

        def run(idx: torch.Tensor | None, r: int) -> None:
            obj = objective if idx is None else objective.subset(idx)
            self._single(model, x, obj, threat, generator, tracker, idx, self.random_init or r > 0)

        run_restarts(self.restarts, tracker, x, run)
        return tracker.result(x, threat, {"checkpoints": apgd_checkpoints(self.steps)})


class _TargetedDLR(TargetedMisclassification):
    """Targeted DLR of Croce & Hein (2020): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``.

    Unlike :func:`advlab.losses.dlr` (which knows only the target) it uses the true
    label ``y`` in the numerator, as the paper and AutoAttack do.
    """

    def __init__(self, targets: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(targets)
        self.labels = labels

    def __getitem__(self, idx: torch.Tensor | slice) -> _TargetedDLR:
        return _TargetedDLR(self.classes[idx], self.labels[idx])

    def loss(self, logits: torch.Tensor, kind: str = "dlr") -> torch.Tensor:
        if kind != "dlr" or logits.shape[1] < 4:
            return super().loss(logits, kind)
        srt, _ = logits.sort(dim=1, descending=True)
        z_y = logits.gather(1, self.labels[:, None]).squeeze(1)
        z_t = logits.gather(1, self.classes[:, None]).squeeze(1)
        return -(z_y - z_t) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


class APGDT(APGD):
    """Targeted APGD over the top-``n_target_classes`` classes (Croce & Hein 2020).

    For an untargeted criterion, runs targeted APGD (the paper's targeted DLR loss
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` by default) towards the class
    with the 2nd, 3rd, ... highest clean logit, each run only on
    samples not broken by the previous ones; success is the untargeted criterion.
    For a targeted criterion it is plain APGD towards the given targets.

    Args:
        steps: iterations per target class (and restart).
        n_target_classes: how many of the highest non-label classes to target (9 in
            AutoAttack's standard version, capped at ``classes - 1``).
        restarts: runs per target class.
        loss: ``"dlr"`` (targeted DLR), ``"ce"`` or ``"cw"``.
        rho, momentum, random_init, early_stop: as in :class:`APGD`.

    References:
        Croce & Hein, "Reliable evaluation of adversarial robustness with an
        ensemble of diverse parameter-free attacks", ICML 2020 (arXiv:2003.01690).
    """

    def __init__(self, steps: int = 100, n_target_classes: int = 9, restarts: int = 1,
                 loss: str = "dlr", rho: float = 0.75, momentum: float = 0.75,
                 random_init: bool = True, early_stop: bool = False) -> None:
        store_settings(self, locals())

    def _check_settings(self) -> None:
        super()._check_settings()
        require_int("n_target_classes", self.n_target_classes, 1)

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        if criterion.targeted:
            return super()._run(model, x, criterion, threat, generator)
        n = x.shape[0]
        with torch.no_grad():
            clean = model(x)
        order = clean.argsort(dim=1, descending=True)
        labels = criterion.classes
        # rank the non-label classes by clean logit
        others = order[order != labels[:, None]].reshape(n, -1)
        k = min(self.n_target_classes, others.shape[1])
        tracker = Tracker(x, LossObjective(criterion, "dlr").initial_keys(n, x))
        runs = [(t, r) for t in range(k) for r in range(self.restarts)]

        def run(idx: torch.Tensor | None, i: int) -> None:
            t, r = runs[i]  # target class t (by clean logit), restart r
            sel = torch.arange(n, device=x.device) if idx is None else idx
            objective = LossObjective(_TargetedDLR(others[sel, t], labels[sel]), self.loss,
                                      criterion[sel], "dlr")
            self._single(model, x, objective, threat, generator, tracker, idx,
                         self.random_init or r > 0)

        # the first run attacks every sample, each later one only those not broken yet
        run_restarts(len(runs), tracker, x, run)
        tracker.forwards += 1
        return tracker.result(x, threat, {"checkpoints": apgd_checkpoints(self.steps),
                                          "n_target_classes": k})

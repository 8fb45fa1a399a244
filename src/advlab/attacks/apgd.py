"""Auto-PGD (APGD): step-size-free PGD with momentum and checkpoints, and its targeted version.

One loop serves every norm through the :class:`~advlab.threat.Norm` strategy
(the paper defines Linf and L2; L1 here uses the same schedule with the
strategy's sparse steepest-ascent step and exact L1 projection).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, require_int
from advlab.criteria import Criterion, TargetedMisclassification
from advlab.losses import LOSSES
from advlab.threat import ThreatModel

__all__ = ["APGD", "APGDT", "apgd_checkpoints"]


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


@dataclass
class _Outcome:
    x: torch.Tensor
    success: torch.Tensor
    score: torch.Tensor
    logits: torch.Tensor
    passes: torch.Tensor
    forwards: torch.Tensor


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


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

    def __init__(
        self,
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        momentum: float = 0.75,
        random_init: bool = True,
        early_stop: bool = False,
    ) -> None:
        self.steps = steps
        self.restarts = restarts
        self.loss = loss
        self.rho = rho
        self.momentum = momentum
        self.random_init = random_init
        self.early_stop = early_stop

    def _check_settings(self) -> None:
        require_int("steps", self.steps, 1)
        require_int("restarts", self.restarts, 1)
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; use one of {sorted(LOSSES)}")
        if not 0 < self.rho <= 1:
            raise ValueError(f"rho must lie in (0, 1], got {self.rho}")
        if not 0 < self.momentum <= 1:
            raise ValueError(f"momentum must lie in (0, 1], got {self.momentum}")

    # ------------------------------------------------------------------ one run
    def _single(
        self,
        model: nn.Module,
        x: torch.Tensor,
        loss_crit: Criterion,
        succ_crit: Criterion,
        threat: ThreatModel,
        generator: torch.Generator | None,
        random_start: bool,
        score_kind: str,
    ) -> _Outcome:
        """One APGD run on all of ``x``; returns the best point per sample."""
        n = x.shape[0]
        dev = x.device
        norm = threat.strategy
        eps = threat.eps
        lo, hi = threat.bounds
        kind = self.loss

        out_x = x.clone()
        out_succ = torch.zeros(n, dtype=torch.bool, device=dev)
        out_score = torch.full((n,), float("-inf"), dtype=x.dtype, device=dev)
        out_logits: torch.Tensor | None = None
        passes = torch.zeros(n, dtype=torch.long, device=dev)
        forwards = torch.zeros(n, dtype=torch.long, device=dev)

        def project(xa: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
            return torch.clamp(x0 + norm.project(xa - x0, eps), lo, hi)

        def grad_at(xa: torch.Tensor, crit: Criterion) -> tuple[torch.Tensor, ...]:
            xg = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = model(xg)
                obj = crit.loss(logits, kind)
                (g,) = torch.autograd.grad(obj.sum(), xg)
            return logits.detach(), obj.detach(), g

        def record(idx: torch.Tensor, xa: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            nonlocal out_logits
            sc = succ_crit[idx]
            succ = sc.is_success(logits)
            score = sc.loss(logits, score_kind)
            b_succ, b_score = out_succ[idx], out_score[idx]
            better = (succ & ~b_succ) | ((succ == b_succ) & (score > b_score))
            if out_logits is None:
                out_logits = logits.new_full((n, logits.shape[1]), float("nan"))
            upd = idx[better]
            out_x[upd] = xa[better]
            out_succ[upd] = succ[better]
            out_score[upd] = score[better]
            out_logits[upd] = logits[better]
            return succ

        idx = torch.arange(n, device=dev)
        x0 = x
        lcrit = loss_crit
        if random_start and eps > 0:
            delta = norm.random_init(x.shape, eps, generator=generator, device=dev, dtype=x.dtype)
            xa = torch.clamp(x + delta, lo, hi)
        else:
            xa = x.clone()
        logits, obj, grad = grad_at(xa, lcrit)
        passes += 1
        succ = record(idx, xa, logits)

        eta = torch.full((n,), 2.0 * eps, dtype=x.dtype, device=dev)
        x_max, obj_max, grad_max = xa.clone(), obj.clone(), grad.clone()
        x_prev = xa.clone()
        history = torch.full((self.steps + 1, n), float("nan"), dtype=x.dtype, device=dev)
        history[0] = obj
        obj_last_check = obj_max.clone()
        reduced_last_check = torch.ones(n, dtype=torch.bool, device=dev)
        checkpoints = set(apgd_checkpoints(self.steps))
        last_cp = 0

        def keep_only(keep: torch.Tensor) -> None:
            nonlocal idx, x0, lcrit, xa, grad, eta, x_max, obj_max, grad_max, x_prev
            nonlocal history, obj_last_check, reduced_last_check
            idx, x0, lcrit = idx[keep], x0[keep], lcrit[keep]
            xa, grad, eta = xa[keep], grad[keep], eta[keep]
            x_max, obj_max, grad_max = x_max[keep], obj_max[keep], grad_max[keep]
            x_prev, history = x_prev[keep], history[:, keep]
            obj_last_check, reduced_last_check = obj_last_check[keep], reduced_last_check[keep]

        if self.early_stop and bool(succ.any()):
            keep_only(~succ)

        for i in range(self.steps):
            if idx.numel() == 0:
                break
            with torch.no_grad():
                alpha = self.momentum if i > 0 else 1.0
                e = _bcast(eta, xa)
                z = project(xa + e * norm.normalize_grad(grad), x0)
                x_new = project(xa + alpha * (z - xa) + (1 - alpha) * (xa - x_prev), x0)
                x_prev = xa
                xa = x_new
            logits, obj, grad = grad_at(xa, lcrit)
            passes[idx] += 1
            succ = record(idx, xa, logits)
            history[i + 1] = obj
            with torch.no_grad():
                improved = obj > obj_max
                x_max[improved] = xa[improved]
                obj_max[improved] = obj[improved]
                grad_max[improved] = grad[improved]
            it = i + 1
            if it in checkpoints:
                h = history[last_cp:it + 1]
                increases = (h[1:] > h[:-1]).sum(0)
                cond1 = increases.to(x.dtype) <= self.rho * (it - last_cp)  # as AutoAttack
                cond2 = ~reduced_last_check & (obj_last_check >= obj_max)
                halve = cond1 | cond2
                reduced_last_check = halve
                obj_last_check = obj_max.clone()
                if bool(halve.any()):
                    eta = torch.where(halve, eta / 2, eta)
                    xa = torch.where(_bcast(halve, xa), x_max, xa)
                    grad = torch.where(_bcast(halve, grad), grad_max, grad)
                last_cp = it
            if self.early_stop and bool(succ.any()):
                keep_only(~succ)

        assert out_logits is not None
        return _Outcome(out_x, out_succ, out_score, out_logits, passes, forwards)

    def _merge(self, acc: _Outcome | None, new: _Outcome, idx: torch.Tensor) -> _Outcome:
        """Fold the outcome of a run on samples ``idx`` into the running best ``acc``."""
        if acc is None:
            return new
        b_succ, b_score = acc.success[idx], acc.score[idx]
        better = (new.success & ~b_succ) | ((new.success == b_succ) & (new.score > b_score))
        upd = idx[better]
        acc.x[upd] = new.x[better]
        acc.success[upd] = new.success[better]
        acc.score[upd] = new.score[better]
        acc.logits[upd] = new.logits[better]
        acc.passes[idx] += new.passes
        acc.forwards[idx] += new.forwards
        return acc

    def _result(self, x: torch.Tensor, threat: ThreatModel, acc: _Outcome,
                info: dict[str, object]) -> AttackResult:
        return AttackResult(x_adv=acc.x, success=acc.success, logits=acc.logits,
                            distance=threat.strategy.distance(acc.x, x), passes=acc.passes,
                            forwards=acc.forwards, info=info)

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        criterion: Criterion,
        threat: ThreatModel,
        generator: torch.Generator | None,
    ) -> AttackResult:
        self._check_settings()
        n = x.shape[0]
        acc: _Outcome | None = None
        for r in range(self.restarts):
            idx = (torch.arange(n, device=x.device) if acc is None
                   else (~acc.success).nonzero().squeeze(1))
            if idx.numel() == 0:
                break
            crit = criterion[idx]
            out = self._single(model, x[idx], crit, crit, threat, generator,
                               self.random_init or r > 0, self.loss)
            acc = self._merge(acc, out, idx)
        assert acc is not None
        return self._result(x, threat, acc, {"checkpoints": apgd_checkpoints(self.steps)})


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

    def __init__(
        self,
        steps: int = 100,
        n_target_classes: int = 9,
        restarts: int = 1,
        loss: str = "dlr",
        rho: float = 0.75,
        momentum: float = 0.75,
        random_init: bool = True,
        early_stop: bool = False,
    ) -> None:
        super().__init__(steps=steps, restarts=restarts, loss=loss, rho=rho, momentum=momentum,
                         random_init=random_init, early_stop=early_stop)
        self.n_target_classes = n_target_classes

    def _check_settings(self) -> None:
        super()._check_settings()
        require_int("n_target_classes", self.n_target_classes, 1)

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        criterion: Criterion,
        threat: ThreatModel,
        generator: torch.Generator | None,
    ) -> AttackResult:
        if criterion.targeted:
            return super()._run(model, x, criterion, threat, generator)
        self._check_settings()
        n = x.shape[0]
        with torch.no_grad():
            clean = model(x)
        order = clean.argsort(dim=1, descending=True)
        labels = criterion.classes
        # rank the non-label classes by clean logit
        others = order[order != labels[:, None]].reshape(n, -1)
        k = min(self.n_target_classes, others.shape[1])
        acc: _Outcome | None = None
        for t in range(k):
            for r in range(self.restarts):
                idx = (torch.arange(n, device=x.device) if acc is None
                       else (~acc.success).nonzero().squeeze(1))
                if idx.numel() == 0:
                    break
                tcrit = _TargetedDLR(others[idx, t], labels[idx])
                out = self._single(model, x[idx], tcrit, criterion[idx], threat, generator,
                                   self.random_init or r > 0, "dlr")
                acc = self._merge(acc, out, idx)
        assert acc is not None
        acc.forwards += 1
        return self._result(x, threat, acc, {"checkpoints": apgd_checkpoints(self.steps),
                                             "n_target_classes": k})

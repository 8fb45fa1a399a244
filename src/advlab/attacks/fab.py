"""FAB and FAB-T: the Fast Adaptive Boundary attack (minimum norm, Linf / L2 / L1).

At every step the classifier is linearised at the current iterate; the
linearised decision hyperplane of one class (untargeted: the closest one,
targeted: the target) is intersected with the input box, and both the iterate
and the clean input are projected onto it (the exact box-constrained
projection of Croce & Hein for each norm). The next iterate is a biased
mixture of the two projections, extrapolated by ``eta``; once it is
adversarial it is pulled back towards the clean input by ``beta``. The
smallest adversarial iterate is kept and finally shrunk by a short line search
on the segment from the clean input. The attacks are unbounded:
``threat.eps`` only sets the radius of the random restarts (as in AutoAttack).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, require_int, store_settings
from advlab.criteria import Criterion
from advlab.threat import ThreatModel

__all__ = ["FAB", "FABT", "project_hyperplane_box"]

_TINY = 1e-12


# ----------------------------------------------------------------------------- projection


def _monotone_solve(rate: torch.Tensor, cap: torch.Tensor, slope: torch.Tensor,
                    need: torch.Tensor) -> torch.Tensor:
    """Smallest ``tau >= 0`` with ``sum_i a_i min(tau * rate_i, cap_i) = need`` (``inf`` if none).

    ``slope_i = a_i * rate_i`` and the saturated value of coordinate ``i`` is
    ``a_i * cap_i``; the sum is piecewise linear and nondecreasing in ``tau``
    with breakpoints ``cap_i / rate_i``, solved exactly after one sort.
    """
    brk = cap / rate.clamp_min(_TINY)
    brk, order = brk.sort(dim=1)
    sl = slope.gather(1, order)
    sat = sl * brk  # a_i * cap_i
    cum_sat = sat.cumsum(1)  # saturated coordinates up to and including k
    rest = sl.sum(1, keepdim=True) - sl.cumsum(1)  # slopes of the coordinates above k
    value = cum_sat + brk * rest  # the sum at tau = brk_k
    k = (value < need[:, None]).sum(1)  # first breakpoint reaching ``need``
    d = value.shape[1]
    km1 = (k - 1).clamp_min(0)[:, None]
    lower = torch.where(k > 0, cum_sat.gather(1, km1).squeeze(1), torch.zeros_like(need))
    slope_hi = torch.where(k > 0, rest.gather(1, km1).squeeze(1), sl.sum(1))
    tau = (need - lower) / slope_hi.clamp_min(_TINY)
    return torch.where(k >= d, torch.full_like(tau, float("inf")), tau.clamp_min(0))


#: a weight below this fraction of the row's largest counts as zero in the projection
_NEGLIGIBLE = 1e-6


def project_hyperplane_box(p: torch.Tensor, w: torch.Tensor, r: torch.Tensor, lo: float, hi: float,
                           norm: str) -> torch.Tensor:
    """Minimal-norm ``d`` with ``w . d = r`` and ``lo <= p + d <= hi`` (rows of ``(m, D)`` tensors).

    The box-constrained projection of Croce & Hein (2020) onto the hyperplane
    ``{z : w . (z - p) = r}``: Linf moves every useful coordinate by the same
    amount ``t`` (capped by the box), L2 moves along ``w`` (capped by the box),
    L1 fills the coordinates of largest ``|w_i|`` first. Where the box makes
    the hyperplane unreachable, the point of the box that gets closest is
    returned (every useful coordinate at its box limit).
    """
    sign = torch.sign(r)
    need = r.abs()
    ws = w * sign[:, None]
    a = ws.abs()
    # coordinates whose weight is negligible next to the row's largest do not move: they
    # cannot help reach the plane, and where it is out of reach moving them to their box
    # limit only adds distance (on a Linf-trained CNN, with many input gradients near zero,
    # that made FAB's L2 iterates 4x longer than needed)
    useful = a > _NEGLIGIBLE * a.amax(1, keepdim=True)
    a = a * useful
    cap = torch.where(ws > 0, hi - p, p - lo).clamp_min(0) * useful
    direction = torch.sign(ws)
    if norm == "l1":
        a_sorted, order = a.sort(dim=1, descending=True)
        c_sorted = cap.gather(1, order)
        cum = (a_sorted * c_sorted).cumsum(1)
        before = cum - a_sorted * c_sorted
        part = ((need[:, None] - before) / a_sorted.clamp_min(_TINY)).clamp(min=0)
        u_sorted = torch.minimum(part, c_sorted) * (a_sorted > 0)
        u = torch.zeros_like(u_sorted).scatter(1, order, u_sorted)
    else:
        rate = torch.ones_like(a) if norm == "linf" else a
        tau = _monotone_solve(rate, cap, a * rate, need)
        reach = torch.isfinite(tau)[:, None]  # else every useful coordinate at its limit (inf * 0 is nan)
        tau = torch.where(torch.isfinite(tau), tau, torch.zeros_like(tau))
        u = torch.where(reach, torch.minimum(tau[:, None] * rate, cap), cap)
    return direction * u


def _dual(g: torch.Tensor, norm: str) -> torch.Tensor:
    """Dual norm of the last dimension (L1 for Linf, L2 for L2, Linf for L1)."""
    if norm == "linf":
        return g.abs().sum(-1)
    if norm == "l2":
        return g.norm(dim=-1)
    return g.abs().amax(-1)


# ----------------------------------------------------------------------------- one run


@dataclass
class _Goal:
    """The boundary a FAB run heads for, on a subset of the batch.

    ``target is None``: untargeted, the closest linearised boundary between
    ``labels`` and any other class. Otherwise the boundary ``f_target = f_ref``
    (``ref is None``: the strongest competitor of the target at the iterate).
    ``criterion`` decides success.
    """

    criterion: Criterion
    labels: torch.Tensor | None = None
    target: torch.Tensor | None = None
    ref: torch.Tensor | None = None


@dataclass
class _Best:
    """Per-sample smallest adversarial point found so far (``norm = inf``: none) and pass counts."""

    x: torch.Tensor
    norm: torch.Tensor
    margin: torch.Tensor
    passes: torch.Tensor
    forwards: torch.Tensor


def _closest_plane(model: nn.Module, xa: torch.Tensor, labels: torch.Tensor,
                   norm: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Linearised ``f_k - f_y`` of the class ``k`` whose boundary is closest in ``norm``.

    One backward pass per class other than the label. Returns the value at
    ``xa``, its flattened gradient and the number of backward passes.
    """
    m = xa.shape[0]
    xg = xa.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(xg)
        k = out.shape[1]
        cls = torch.arange(k, device=xa.device).expand(m, k)
        others = cls[cls != labels[:, None]].reshape(m, k - 1)
        diffs = out.gather(1, others) - out.gather(1, labels[:, None])
        grads = [torch.autograd.grad(diffs[:, j].sum(), xg, retain_graph=j < k - 2)[0].flatten(1)
                 for j in range(k - 1)]
    gs = torch.stack(grads, 1)
    fd = diffs.detach()
    best = (fd.abs() / (_dual(gs, norm) + _TINY)).argmin(1)
    rows = torch.arange(m, device=xa.device)
    return fd[rows, best], gs[rows, best], k - 1


def _target_plane(model: nn.Module, xa: torch.Tensor, goal: _Goal) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Linearised ``f_target - f_ref`` (one backward pass)."""
    assert goal.target is not None
    t = goal.target[:, None]
    xg = xa.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(xg)
        ref = goal.ref[:, None] if goal.ref is not None else (
            out.detach().scatter(1, t, float("-inf")).argmax(1, keepdim=True))
        diff = (out.gather(1, t) - out.gather(1, ref)).squeeze(1)
        (grad,) = torch.autograd.grad(diff.sum(), xg)
    return diff.detach(), grad.flatten(1), 1


def _fab_run(model: nn.Module, x0: torch.Tensor, start: torch.Tensor, goal: _Goal, threat: ThreatModel,
             params: tuple[int, float, float, float], best: _Best) -> tuple[int, int]:
    """One FAB run from ``start`` on the samples of ``best`` (updated in place); returns passes, forwards."""
    steps, alpha_max, eta, beta = params
    strategy = threat.strategy
    lo, hi = threat.bounds
    m = x0.shape[0]
    f0 = x0.flatten(1)
    x1 = start
    passes = 0
    for _ in range(steps):
        if goal.target is None:
            assert goal.labels is not None
            g, w, cost = _closest_plane(model, x1, goal.labels, threat.norm)
        else:
            g, w, cost = _target_plane(model, x1, goal)
        passes += cost
        with torch.no_grad():
            f1 = x1.flatten(1)
            # the plane {z : g + w.(z - x1) = 0}: required w.d from x1 and from x0
            need = torch.cat([-g, -(g + (w * (f0 - f1)).sum(1))])
            d = project_hyperplane_box(torch.cat([f1, f0]), torch.cat([w, w]), need, lo, hi, threat.norm)
            d1, d0 = d[:m], d[m:]
            n1 = strategy.norm(d1).clamp_min(1e-8)
            n0 = strategy.norm(d0).clamp_min(1e-8)
            alpha = (n1 / (n1 + n0)).clamp(0, alpha_max)[:, None]
            nxt = ((1 - alpha) * (f1 + eta * d1) + alpha * (f0 + eta * d0)).clamp(lo, hi).reshape(x0.shape)
            logits = model(nxt)
            succ = goal.criterion.is_success(logits)
            dist = strategy.distance(nxt, x0)
            better = succ & (dist < best.norm)
            best.x = torch.where(_rows(better, nxt), nxt, best.x)
            best.norm = torch.where(better, dist, best.norm)
            best.margin = torch.where(better, goal.criterion.loss(logits, "cw"), best.margin)
            x1 = torch.where(_rows(succ, nxt), x0 + beta * (nxt - x0), nxt)
    return passes, steps


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(-1, *([1] * (like.ndim - 1)))


def _line_search(model: nn.Module, x0: torch.Tensor, xb: torch.Tensor, criterion: Criterion,
                 margins: tuple[torch.Tensor, torch.Tensor], steps: int,
                 bounds: tuple[float, float]) -> torch.Tensor:
    """Shrink ``xb`` (adversarial) along the segment from ``x0`` (not) by regula falsi on the margin.

    Every candidate is evaluated; the returned point is the closest one to
    ``x0`` found adversarial (``xb`` itself if none is). Costs ``steps`` forwards.
    """
    m_lo, m_hi = margins
    s_lo = torch.zeros_like(m_lo)
    s_hi = torch.ones_like(m_lo)
    out = xb.clone()
    with torch.no_grad():
        for _ in range(steps):
            t = m_lo / (m_lo - m_hi)
            t = torch.where(torch.isfinite(t) & (t > 0) & (t < 1), t, torch.full_like(t, 0.5))
            t = torch.minimum(t * 1.001, (1 + t) / 2)  # just past the crossing: rounding may miss it
            s = s_lo + t * (s_hi - s_lo)
            z = (x0 + _rows(s, x0) * (xb - x0)).clamp(*bounds)
            logits = model(z)
            ok = criterion.is_success(logits)
            mg = criterion.loss(logits, "cw")
            out = torch.where(_rows(ok, z), z, out)
            s_hi, m_hi = torch.where(ok, s, s_hi), torch.where(ok, mg, m_hi)
            s_lo, m_lo = torch.where(ok, s_lo, s), torch.where(ok, m_lo, mg)
    return out


# ----------------------------------------------------------------------------- the attacks


def _require_number(name: str, value: object, low: float, high: float, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        left = "(" if low_open else "["
        raise ValueError(f"{name} must lie in {left}{low}, {high}], got {value}")


class FAB(Attack):
    """FAB, the Fast Adaptive Boundary attack (Croce & Hein 2020), Linf / L2 / L1 by the threat model.

    Untargeted: each step linearises the classifier at the iterate ``x1`` and
    takes the class ``k != y`` whose linearised boundary ``f_k = f_y`` is
    closest in the threat model's norm (distance ``|f_k - f_y| / ||grad||_*``,
    dual norm). The iterate and the clean input ``x0`` are projected onto that
    hyperplane intersected with the input box (exact minimal-norm projection
    per norm), giving steps ``d1`` and ``d0``; the next iterate is
    ``(1 - a)(x1 + eta d1) + a (x0 + eta d0)`` with
    ``a = min(||d1|| / (||d1|| + ||d0||), alpha_max)``, clipped to the box.
    An adversarial iterate is recorded if it is the smallest so far and then
    pulled back to ``x0 + beta (x1 - x0)``. The first run starts at ``x0``,
    each further restart at a random point of the ball of radius
    ``min(eps, smallest norm found)`` (``threat.eps`` is used for nothing
    else: the attack is unbounded). A final line search (regula falsi on the
    margin) on the segment from ``x0`` to the best point shrinks it further.
    With a targeted criterion the boundary is always the target's against its
    strongest competitor (FAB-T). Samples already successful at the clean
    input are returned unchanged (norm 0); restarts run on every other sample,
    since each may find a smaller perturbation.

    Args:
        steps: iterations per run (AutoAttack: 100).
        restarts: runs per sample; all but the first start at random points.
        alpha_max: largest weight of the clean input's projection in a step.
        eta: extrapolation of the projection steps (``>= 1``).
        beta: pull-back factor towards ``x0`` after an adversarial iterate.
        search_steps: forward-only line-search steps on the final point
            (0 reproduces AutoAttack's FAB, which has none).

    Returns:
        :class:`~advlab.attacks.base.AttackResult` with ``distance`` in the
        threat model's norm and ``info["norm"]`` the per-sample norm found
        (``inf`` where none). ``passes`` counts one backward pass per class
        other than the label and step (one per step when targeted).

    References:
        Croce & Hein, "Minimally distorted Adversarial Examples with a Fast
        Adaptive Boundary Attack", ICML 2020 (arXiv:1907.02044). Croce & Hein,
        "Reliable evaluation of adversarial robustness with an ensemble of
        diverse parameter-free attacks", ICML 2020 (AutoAttack).
    """

    bounded = False
    steps: int
    restarts: int
    alpha_max: float
    eta: float
    beta: float
    search_steps: int

    def __init__(self, steps: int = 100, restarts: int = 1, alpha_max: float = 0.1, eta: float = 1.05,
                 beta: float = 0.9, search_steps: int = 3) -> None:
        store_settings(self, locals())

    def _check_settings(self) -> None:
        require_int("steps", self.steps, 1)
        require_int("restarts", self.restarts, 1)
        require_int("search_steps", self.search_steps, 0)
        _require_number("alpha_max", self.alpha_max, 0.0, 1.0)
        _require_number("eta", self.eta, 1.0, float("inf"))
        _require_number("beta", self.beta, 0.0, 1.0, low_open=True)

    def _goal(self, criterion: Criterion, idx: torch.Tensor) -> _Goal:
        if criterion.targeted:
            return _Goal(criterion[idx], target=criterion.classes[idx])
        return _Goal(criterion[idx], labels=criterion.classes[idx])

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        best, logits0 = _start(model, x, criterion)
        todo = (~criterion.is_success(logits0)).nonzero().squeeze(1)
        if todo.numel():
            self._attack(model, x, todo, self._goal(criterion, todo), threat, generator, best)
        return self._finish(model, x, criterion, threat, best, logits0)

    def _attack(self, model: nn.Module, x: torch.Tensor, idx: torch.Tensor, goal: _Goal,
                threat: ThreatModel, generator: torch.Generator | None, best: _Best) -> None:
        """``restarts`` runs on the samples ``idx`` of the batch, keeping the smallest adversarial."""
        x0 = x[idx]
        lo, hi = threat.bounds
        params = (self.steps, float(self.alpha_max), float(self.eta), float(self.beta))
        sub = _Best(best.x[idx], best.norm[idx], best.margin[idx], best.passes[idx], best.forwards[idx])
        for r in range(self.restarts):
            start = x0
            if r > 0:
                radius = sub.norm.clamp(max=threat.eps)
                delta = threat.strategy.random_init(x0.shape, radius, generator=generator,
                                                    device=x.device, dtype=x.dtype)
                start = (x0 + delta).clamp(lo, hi)
            passes, forwards = _fab_run(model, x0, start, goal, threat, params, sub)
            sub.passes += passes
            sub.forwards += forwards
        best.x[idx], best.norm[idx], best.margin[idx] = sub.x, sub.norm, sub.margin
        best.passes[idx], best.forwards[idx] = sub.passes, sub.forwards

    def _finish(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
                best: _Best, logits0: torch.Tensor) -> AttackResult:
        """Line search, then success recomputed at the returned points (clean input where lost)."""
        found = torch.isfinite(best.norm) & (best.norm > 0)
        idx = found.nonzero().squeeze(1)
        if idx.numel() and self.search_steps:
            margins = (criterion[idx].loss(logits0[idx], "cw"), best.margin[idx])
            best.x[idx] = _line_search(model, x[idx], best.x[idx], criterion[idx], margins,
                                       self.search_steps, threat.bounds)
            best.forwards[idx] += self.search_steps
        with torch.no_grad():
            logits = model(best.x)
        best.forwards += 1
        success = criterion.is_success(logits)
        lost = found & ~success  # numerically on the boundary: give the clean input back
        best.x[lost] = x[lost]
        logits[lost] = logits0[lost]
        distance = threat.strategy.distance(best.x, x)
        norm = torch.where(success, distance, torch.full_like(distance, float("inf")))
        return AttackResult(x_adv=best.x, success=success, logits=logits, distance=distance,
                            passes=best.passes, forwards=best.forwards, info={"norm": norm})


def _start(model: nn.Module, x: torch.Tensor, criterion: Criterion) -> tuple[_Best, torch.Tensor]:
    """Clean logits and the initial bookkeeping (norm 0 where the clean input already succeeds)."""
    with torch.no_grad():
        logits0 = model(x)
    n = x.shape[0]
    done = criterion.is_success(logits0)
    norm = torch.where(done, torch.zeros(n, dtype=x.dtype, device=x.device),
                       torch.full((n,), float("inf"), dtype=x.dtype, device=x.device))
    best = _Best(x.clone(), norm, criterion.loss(logits0, "cw"),
                 torch.zeros(n, dtype=torch.long, device=x.device),
                 torch.ones(n, dtype=torch.long, device=x.device))
    return best, logits0


class FABT(FAB):
    """FAB-T, the targeted FAB of AutoAttack's standard set (Croce & Hein 2020).

    With an untargeted criterion, targeted FAB runs towards each of the
    ``n_target_classes`` classes with the highest clean logits other than the
    label, in that order, each time only on the samples not broken yet within
    ``threat.eps`` (as in AutoAttack: a sample whose smallest adversarial so far is
    larger than ``eps`` goes on to the next target, and the smallest over all
    targets is kept); each
    run linearises ``f_t - f_y`` (one backward pass per step) and counts any
    misclassification as success. With a targeted criterion it is plain
    targeted FAB towards the given target (against the strongest competitor).
    Every other detail (projection, biased step, restarts, line search) is
    :class:`FAB`'s.

    Args:
        steps: iterations per run and target class (AutoAttack: 100).
        restarts: runs per sample and target class.
        alpha_max: largest weight of the clean input's projection in a step.
        eta: extrapolation of the projection steps (``>= 1``).
        beta: pull-back factor towards the clean input after an adversarial iterate.
        search_steps: forward-only line-search steps on the final point.
        n_target_classes: number of target classes tried (AutoAttack: 9).

    Returns:
        :class:`~advlab.attacks.base.AttackResult`; ``info["norm"]`` as for
        :class:`FAB` and, for an untargeted criterion, ``info["target"]``: the
        target class of the run that broke the sample (``-1``: none, or
        already misclassified).

    References:
        Croce & Hein, "Minimally distorted Adversarial Examples with a Fast
        Adaptive Boundary Attack", ICML 2020 (arXiv:1907.02044); Croce & Hein,
        "Reliable evaluation of adversarial robustness with an ensemble of
        diverse parameter-free attacks", ICML 2020 (FAB-T in AutoAttack).
    """

    n_target_classes: int

    def __init__(self, steps: int = 100, restarts: int = 1, alpha_max: float = 0.1, eta: float = 1.05,
                 beta: float = 0.9, search_steps: int = 3, n_target_classes: int = 9) -> None:
        store_settings(self, locals())

    def _check_settings(self) -> None:
        super()._check_settings()
        require_int("n_target_classes", self.n_target_classes, 1)

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        if criterion.targeted:
            return super()._run(model, x, criterion, threat, generator)
        best, logits0 = _start(model, x, criterion)
        y = criterion.classes
        k = min(self.n_target_classes, logits0.shape[1] - 1)
        top = logits0.scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices
        target = torch.full_like(y, -1)
        eps = float(threat.eps)
        for i in range(k):
            # AutoAttack's rule: a later target runs where the smallest perturbation found
            # so far lies outside the threat model's ball (not only where none was found)
            todo = (best.norm > eps).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            goal = _Goal(criterion[todo], target=top[todo, i], ref=y[todo])
            before = best.norm[todo].clone()
            self._attack(model, x, todo, goal, threat, generator, best)
            hit = todo[best.norm[todo] < before]  # this target gave the smallest so far
            target[hit] = top[hit, i]
        result = self._finish(model, x, criterion, threat, best, logits0)
        result.info["target"] = torch.where(result.success, target, torch.full_like(target, -1))
        return result

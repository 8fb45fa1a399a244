"""Square attack: a score-based black-box attack by random search (no gradients)."""

from __future__ import annotations

import math

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, require_int, store_settings
from advlab.criteria import Criterion
from advlab.threat import ThreatModel

__all__ = ["Square", "meta_pseudo_gaussian", "pseudo_gaussian", "square_fraction"]


def _dev(generator: torch.Generator | None) -> torch.device | None:
    """Where draws from ``generator`` are made (a CUDA generator draws on its GPU)."""
    return generator.device if generator is not None else None


def square_fraction(p_init: float, it: int, queries: int) -> float:
    """The paper's schedule of the square's area fraction ``p`` (rescaled to 10,000 queries)."""
    i = int(it / max(1, queries) * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
                       (4000, 64), (6000, 128), (8000, 256)):
        if i <= bound:
            return p_init / div
    return p_init / 512


def pseudo_gaussian(h: int, w: int, *, device: torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The paper's centre-surround pattern on an ``h x w`` window, unit L2 norm.

    A pixel at Chebyshev ring ``d`` from the centre gets ``sum_{j=d+1}^{n+1} 1/j^2``
    with ``n = max(h, w) // 2`` (Andriushchenko et al. 2020, Sec. 3.2): large in the
    middle, falling off towards the border.
    """
    n = max(h, w) // 2
    r = (torch.arange(h, device=device, dtype=dtype) - (h - 1) / 2).abs()
    q = (torch.arange(w, device=device, dtype=dtype) - (w - 1) / 2).abs()
    ring = torch.maximum(r[:, None], q[None, :]).floor().long()
    tail = torch.cumsum(1.0 / torch.arange(n + 1, 0, -1, device=device, dtype=dtype) ** 2, 0)
    tail = tail.flip(0)  # tail[d] = sum_{j=d+1}^{n+1} 1/j^2
    eta = tail[ring.clamp(max=n)]
    return eta / eta.norm()


def meta_pseudo_gaussian(s: int, transpose: bool, *, device: torch.device | None = None,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The L2 update's pattern: two halves of opposite sign, each a :func:`pseudo_gaussian`."""
    top = s // 2
    if top == 0:
        eta = pseudo_gaussian(s, s, device=device, dtype=dtype)
    else:
        eta = torch.cat([pseudo_gaussian(top, s, device=device, dtype=dtype),
                         -pseudo_gaussian(s - top, s, device=device, dtype=dtype)])
    eta = eta.t() if transpose else eta
    return eta / eta.norm()


class Square(Attack):
    """Square attack (Andriushchenko et al. 2020): random search over square-shaped updates.

    It uses only the model's logits (one forward pass per query, no gradient), which
    makes it the standard check for gradient masking: if it breaks points that
    gradient attacks with the same budget could not, the gradients are misleading.

    Under ``linf`` this is the paper's algorithm: vertical stripes of ``+-eps`` as
    the start, then per query a square window of side ``s`` (shrinking with the
    schedule of :func:`square_fraction`) is set to ``+-eps`` per channel, and the
    candidate is kept if it lowers the margin loss. Under ``l2`` it is the paper's
    L2 scheme (Alg. 3): the start is a grid of centre-surround squares with random
    signs scaled to norm ``eps``; each query moves the perturbation's mass in a
    second random window ``W2`` into a window ``W1`` (old direction in ``W1`` plus a
    new two-lobed centre-surround pattern of random sign), together with a share
    of the unused budget, so the norm stays at ``eps`` before clipping to the box.
    Under ``l1`` (not in the paper) it adds a random-sign square scaled by
    ``sqrt(p)`` to the current perturbation and projects back onto the ball and box.

    Args:
        queries: model queries per sample (the paper and AutoAttack use 5,000).
        p_init: initial fraction of pixels in the square (0.8 for Linf in AutoAttack).
        restarts: runs; later runs attack only unbroken samples.
        early_stop: stop querying a sample once it is successful (always the case
            in the paper).

    Returns:
        :class:`~advlab.attacks.base.AttackResult` with ``forwards`` the queries spent
        and ``passes`` zero (no gradients).

    References:
        Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient
        black-box adversarial attack via random search", ECCV 2020 (arXiv:1912.00049).
    """

    def __init__(self, queries: int = 5000, p_init: float = 0.8, restarts: int = 1,
                 early_stop: bool = True) -> None:
        store_settings(self, locals())

    def _check_settings(self) -> None:
        require_int("queries", self.queries, 1)
        if not 0 < self.p_init <= 1:
            raise ValueError(f"p_init must lie in (0, 1], got {self.p_init}")
        require_int("restarts", self.restarts, 1)

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        n = x.shape[0]
        dev = x.device
        shape = x.shape
        x4 = x.reshape(n, 1, 1, -1) if x.ndim != 4 else x
        out_x = x4.clone()
        with torch.no_grad():
            out_logits = model(x)
        out_succ = criterion.is_success(out_logits)
        out_margin = -criterion.loss(out_logits, "cw")
        forwards = torch.ones(n, dtype=torch.long, device=dev)
        if threat.eps > 0:
            for _ in range(self.restarts):
                idx = (~out_succ).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                self._search(model, x4, shape, criterion, threat, generator, idx, out_x,
                             out_logits, out_succ, out_margin, forwards)
        x_adv = out_x.reshape(shape)
        return AttackResult(x_adv=x_adv, success=out_succ, logits=out_logits,
                            distance=threat.strategy.distance(x_adv, x),
                            passes=torch.zeros(n, dtype=torch.long, device=dev),
                            forwards=forwards, info={"queries": self.queries})

    def _rand_sign(self, shape: tuple[int, ...], generator: torch.Generator | None,
                   like: torch.Tensor) -> torch.Tensor:
        r = torch.randint(0, 2, shape, generator=generator, device=like.device)
        return r.to(like.dtype) * 2 - 1

    @torch.no_grad()
    def _search(self, model: nn.Module, x4: torch.Tensor, shape: torch.Size, criterion: Criterion,
                threat: ThreatModel, generator: torch.Generator | None, idx: torch.Tensor,
                out_x: torch.Tensor, out_logits: torch.Tensor, out_succ: torch.Tensor,
                out_margin: torch.Tensor, forwards: torch.Tensor) -> None:
        eps = threat.eps
        lo, hi = threat.bounds
        norm = threat.strategy
        linf = threat.norm == "linf"
        l2 = threat.norm == "l2"
        _, c, h, w = x4.shape
        dims = (c, h, w)

        def query(xc4: torch.Tensor, ii: torch.Tensor) -> tuple[torch.Tensor, ...]:
            logits = model(xc4.reshape((len(ii),) + tuple(shape[1:])))
            crit = criterion[ii]
            return logits, crit.is_success(logits), -crit.loss(logits, "cw")

        def project(xc: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
            return torch.clamp(x0 + norm.project(xc - x0, eps), lo, hi)

        x0 = x4[idx]
        m = len(idx)
        # start: vertical stripes of +-eps (Linf), a grid of centre-surround squares (L2),
        # or a random point on the sphere (L1)
        if linf:
            start = project(x0 + eps * self._rand_sign((m, c, 1, w), generator, x0), x0)
        elif l2:
            start = project(x0 + self._l2_start(x0, eps, generator), x0)
        else:
            d = norm.random_init((m, *dims), eps, generator=generator, device=x0.device,
                                 dtype=x0.dtype)
            d = d / (norm.norm(d) + 1e-12).reshape(-1, 1, 1, 1) * eps
            start = project(x0 + d, x0)
        logits, succ, margin = query(start, idx)
        forwards[idx] += 1
        cur_x, cur_margin = start, margin
        self._update(idx, start, logits, succ, margin, out_x, out_logits, out_succ, out_margin)
        active = torch.arange(m, device=x0.device)
        if self.early_stop:
            active = active[~succ]
        for it in range(1, self.queries):
            if active.numel() == 0:
                break
            xa0, xc = x0[active], cur_x[active]
            p = square_fraction(self.p_init, it, self.queries)
            s = int(round(math.sqrt(p * h * w)))
            s = max(1, min(s, h, w))
            ch = int(torch.randint(0, h - s + 1, (1,), generator=generator, device=_dev(generator)))
            cw = int(torch.randint(0, w - s + 1, (1,), generator=generator, device=_dev(generator)))
            k = len(active)
            if linf:
                cand = project(self._linf_candidate(xc, xa0, ch, cw, s, eps, (lo, hi), generator),
                               xa0)
            elif l2:
                cand = project(self._l2_candidate(xc, xa0, it, h, w, c, eps, generator), xa0)
            else:
                upd = torch.zeros_like(xc)
                upd[:, :, ch:ch + s, cw:cw + s] = self._rand_sign((k, c, 1, 1), generator, xc)
                upd = upd / (norm.norm(upd) + 1e-12).reshape(-1, 1, 1, 1) * eps * math.sqrt(p)
                cand = project(xc + upd, xa0)
            ii = idx[active]
            logits, succ, margin = query(cand, ii)
            forwards[ii] += 1
            better = margin < cur_margin[active]
            a_b = active[better]
            cur_x[a_b] = cand[better]
            cur_margin[a_b] = margin[better]
            self._update(ii[better], cand[better], logits[better], succ[better], margin[better],
                         out_x, out_logits, out_succ, out_margin)
            if self.early_stop:
                active = active[~(better & succ)]

    def _linf_candidate(self, xc: torch.Tensor, xa0: torch.Tensor, ch: int, cw: int, s: int,
                        eps: float, box: tuple[float, float],
                        generator: torch.Generator | None) -> torch.Tensor:
        """The paper's Linf update (Alg. 2): the window at ``(ch, cw)`` set to ``+-eps`` per channel.

        Signs are redrawn (up to 10 times) for the points whose window would not change. Whether
        a sign changes a channel's window is decided once per query for ``+eps`` and ``-eps``,
        so the redraws work on one value per point and channel, not on the window's pixels.
        """
        lo, hi = box
        k, c = xc.shape[:2]
        cand = xc.clone()
        base = xa0[:, :, ch:ch + s, cw:cw + s]
        cur = xc[:, :, ch:ch + s, cw:cw + s]
        signs = eps * self._rand_sign((k, c, 1, 1), generator, xc)
        # per point and channel: does +eps / -eps leave the whole window as it is?
        up_same = ((torch.clamp(base + eps, lo, hi) - cur).abs() < 1e-7).flatten(2).all(2)
        down_same = ((torch.clamp(base - eps, lo, hi) - cur).abs() < 1e-7).flatten(2).all(2)
        for _ in range(10):
            same = torch.where(signs.view(k, c) > 0, up_same, down_same).all(1)
            if not bool(same.any()):
                break
            new = eps * self._rand_sign((k, c, 1, 1), generator, xc)
            signs = torch.where(same[:, None, None, None], new, signs)
        cand[:, :, ch:ch + s, cw:cw + s] = base + signs
        return cand

    def _l2_start(self, x0: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
        """The paper's L2 start: a grid of centre-surround squares of random sign, norm ``eps``."""
        m, c, h, w = x0.shape
        d = torch.zeros_like(x0)
        bh, bw = max(h // 5, 1), max(w // 5, 1)
        eta = pseudo_gaussian(bh, bw, device=x0.device, dtype=x0.dtype)
        for r0 in range((h - bh * (h // bh)) // 2, h - bh + 1, bh):
            for c0 in range((w - bw * (w // bw)) // 2, w - bw + 1, bw):
                d[:, :, r0:r0 + bh, c0:c0 + bw] = eta * self._rand_sign((m, c, 1, 1), generator, x0)
        return d / (d.flatten(1).norm(dim=1) + 1e-12).reshape(-1, 1, 1, 1) * eps

    def _l2_candidate(self, xc: torch.Tensor, x0: torch.Tensor, it: int, h: int, w: int, c: int,
                      eps: float, generator: torch.Generator | None) -> torch.Tensor:
        """One query of the paper's L2 scheme (Alg. 3) for the current points ``xc``."""
        p = square_fraction(self.p_init, it, self.queries)
        s = max(int(round(math.sqrt(p * h * w))), 3)
        s = min(s + (s % 2 == 0), h, w)  # odd, at most the image

        def pos(limit: int) -> int:
            return int(torch.randint(0, limit - s + 1, (1,), generator=generator,
                                     device=_dev(generator)))

        r1, c1, r2, c2 = pos(h), pos(w), pos(h), pos(w)
        transpose = bool(torch.randint(0, 2, (1,), generator=generator, device=_dev(generator)))
        k = xc.shape[0]
        nu = xc - x0
        unused2 = (eps ** 2 - nu.flatten(1).pow(2).sum(1)).clamp_min(0)  # (k,)
        union = torch.zeros((h, w), dtype=torch.bool, device=xc.device)
        union[r1:r1 + s, c1:c1 + s] = True
        union[r2:r2 + s, c2:c2 + s] = True
        avail2 = (nu * union).pow(2).sum((2, 3)) + (unused2 / c)[:, None]  # (k, c)
        w1 = nu[:, :, r1:r1 + s, c1:c1 + s]
        w1 = w1 / (w1.pow(2).sum((2, 3), keepdim=True).sqrt() + 1e-12)
        eta = meta_pseudo_gaussian(s, transpose, device=xc.device, dtype=xc.dtype)
        temp = self._rand_sign((k, c, 1, 1), generator, xc) * eta + w1
        temp = temp / (temp.pow(2).sum((2, 3), keepdim=True).sqrt() + 1e-12)
        new = nu.clone()
        new[:, :, r2:r2 + s, c2:c2 + s] = 0
        new[:, :, r1:r1 + s, c1:c1 + s] = temp * avail2.sqrt()[:, :, None, None]
        return x0 + new

    @staticmethod
    def _update(ii: torch.Tensor, xc: torch.Tensor, logits: torch.Tensor, succ: torch.Tensor,
                margin: torch.Tensor, out_x: torch.Tensor, out_logits: torch.Tensor,
                out_succ: torch.Tensor, out_margin: torch.Tensor) -> None:
        b_succ, b_margin = out_succ[ii], out_margin[ii]
        better = (succ & ~b_succ) | ((succ == b_succ) & (margin < b_margin))
        u = ii[better]
        out_x[u] = xc[better]
        out_logits[u] = logits[better]
        out_succ[u] = succ[better]
        out_margin[u] = margin[better]

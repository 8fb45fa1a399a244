"""Threat models: the set of allowed perturbations.

A :class:`ThreatModel` is a norm ball of radius ``eps`` around the clean input,
intersected with the box ``bounds`` of valid inputs. Everything that depends on
the norm (projection, steepest-ascent direction, sampling inside the ball,
measuring a distance) lives in one :class:`Norm` strategy per norm, so attacks
are written once for every norm.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

__all__ = ["Norm", "LinfNorm", "L2Norm", "L1Norm", "NORMS", "get_norm", "ThreatModel"]

_TINY = 1e-12


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1)


def _per_sample(v: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or per-sample vector ``v`` to the shape of ``like``."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    if v.ndim == 0:
        return v
    return v.reshape(-1, *([1] * (like.ndim - 1)))


class Norm(ABC):
    """Norm-specific geometry used by every iterative attack."""

    name: str

    @abstractmethod
    def norm(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample norm of ``delta`` (shape ``(N,)``)."""

    @abstractmethod
    def project(self, delta: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
        """Euclidean projection of ``delta`` onto the ball of radius ``eps``."""

    @abstractmethod
    def normalize_grad(self, grad: torch.Tensor) -> torch.Tensor:
        """Steepest-ascent direction of unit norm for a gradient ``grad``."""

    @abstractmethod
    def random_init(
        self,
        shape: torch.Size | tuple[int, ...],
        eps: torch.Tensor | float,
        *,
        generator: torch.Generator | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """A sample drawn uniformly from the ball of radius ``eps``."""

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-sample distance between two batches."""
        return self.norm(a - b)


class LinfNorm(Norm):
    """The max norm: every pixel may change by at most ``eps``."""

    name = "linf"

    def norm(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).abs().amax(dim=1)

    def project(self, delta: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
        e = _per_sample(eps, delta)
        return torch.maximum(torch.minimum(delta, e), -e)

    def normalize_grad(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.sign()

    def random_init(self, shape, eps, *, generator, device, dtype):  # type: ignore[no-untyped-def]
        u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
        return (2 * u - 1) * _per_sample(eps, u)


class L2Norm(Norm):
    """The Euclidean norm."""

    name = "l2"

    def norm(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).norm(p=2, dim=1)

    def project(self, delta: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
        n = self.norm(delta)
        e = torch.as_tensor(eps, dtype=delta.dtype, device=delta.device)
        factor = torch.clamp(e / (n + _TINY), max=1.0)
        return delta * _per_sample(factor, delta)

    def normalize_grad(self, grad: torch.Tensor) -> torch.Tensor:
        n = self.norm(grad)
        return grad / _per_sample(n + _TINY, grad)

    def random_init(self, shape, eps, *, generator, device, dtype):  # type: ignore[no-untyped-def]
        g = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        d = math.prod(shape[1:])
        u = torch.rand(shape[0], generator=generator, device=device, dtype=dtype)
        radius = u.pow(1.0 / d) * torch.as_tensor(eps, dtype=dtype, device=device)
        return self.normalize_grad(g) * _per_sample(radius, g)


class L1Norm(Norm):
    """The L1 norm, with the sparse steepest-ascent step of Tramer & Boneh (2019).

    The steepest ascent direction under L1 puts all mass on the largest gradient
    coordinate; like SLIDE we spread it over the top ``sparsity`` fraction of
    coordinates, which is far more effective in practice.

    References:
        Tramer & Boneh, "Adversarial Training and Robustness for Multiple
        Perturbations", NeurIPS 2019. Duchi et al., "Efficient Projections onto
        the l1-Ball for Learning in High Dimensions", ICML 2008.
    """

    name = "l1"

    def __init__(self, sparsity: float = 0.01) -> None:
        self.sparsity = sparsity

    def norm(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).abs().sum(dim=1)

    def project(self, delta: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
        flat = _flat(delta)
        n, d = flat.shape
        e = torch.as_tensor(eps, dtype=delta.dtype, device=delta.device).expand(n)
        a = flat.abs()
        inside = a.sum(dim=1) <= e
        # Duchi et al. (2008): threshold theta so that sum(max(|v| - theta, 0)) = eps.
        mu, _ = torch.sort(a, dim=1, descending=True)
        cums = mu.cumsum(dim=1)
        idx = torch.arange(1, d + 1, device=delta.device, dtype=delta.dtype)
        cond = mu - (cums - e[:, None]) / idx > 0
        rho = cond.to(delta.dtype).mul(idx).argmax(dim=1)  # last index where cond holds
        theta = (cums.gather(1, rho[:, None]).squeeze(1) - e) / (rho + 1).to(delta.dtype)
        theta = torch.clamp(theta, min=0)
        proj = flat.sign() * torch.clamp(a - theta[:, None], min=0)
        out = torch.where(inside[:, None], flat, proj)
        return out.reshape(delta.shape)

    def normalize_grad(self, grad: torch.Tensor) -> torch.Tensor:
        flat = _flat(grad)
        k = max(1, int(round(self.sparsity * flat.shape[1])))
        top = flat.abs().topk(k, dim=1).indices
        out = torch.zeros_like(flat)
        out.scatter_(1, top, flat.gather(1, top).sign() / k)
        return out.reshape(grad.shape)

    def random_init(self, shape, eps, *, generator, device, dtype):  # type: ignore[no-untyped-def]
        n = shape[0]
        d = math.prod(shape[1:])
        # Uniform in the L1 ball: d+1 exponentials normalised by their sum, random signs.
        e = -torch.log(torch.rand((n, d + 1), generator=generator, device=device, dtype=dtype)
                       .clamp_min(_TINY))
        pts = e[:, :d] / e.sum(dim=1, keepdim=True)
        signs = torch.randint(0, 2, (n, d), generator=generator, device=device).to(dtype) * 2 - 1
        radius = torch.as_tensor(eps, dtype=dtype, device=device)
        radius = radius.reshape(-1, 1) if radius.ndim else radius
        return (pts * signs * radius).reshape(shape)


class L0Norm(Norm):
    """The L0 "norm": how many coordinates changed; the budget of sparse, discrete attacks.

    ``eps`` counts coordinates (a fractional budget is rounded down). Projection keeps the
    ``eps`` largest changes of each sample, the steepest-ascent direction is the single
    coordinate of largest gradient, and a random start changes ``eps`` random coordinates.
    It is the threat model of the add-only feature attacks on spam and malware detectors
    (:class:`~advlab.attacks.jsma.AddOnlyJSMA`); the gradient attacks refuse it.

    References:
        Papernot et al., "The Limitations of Deep Learning in Adversarial Settings",
        EuroS&P 2016 (arXiv:1511.07528).
    """

    name = "l0"

    def norm(self, delta: torch.Tensor) -> torch.Tensor:
        return (_flat(delta) != 0).sum(dim=1).to(delta.dtype if delta.is_floating_point() else torch.float32)

    def project(self, delta: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
        flat = _flat(delta)
        n, d = flat.shape
        k = torch.as_tensor(eps, device=delta.device).floor().long().clamp(0, d).expand(n)
        order = flat.abs().argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(d, device=delta.device).expand(n, d))
        return torch.where(rank < k[:, None], flat, torch.zeros_like(flat)).reshape(delta.shape)

    def normalize_grad(self, grad: torch.Tensor) -> torch.Tensor:
        flat = _flat(grad)
        top = flat.abs().argmax(dim=1, keepdim=True)
        out = torch.zeros_like(flat).scatter_(1, top, flat.gather(1, top).sign())
        return out.reshape(grad.shape)

    def random_init(self, shape, eps, *, generator, device, dtype):  # type: ignore[no-untyped-def]
        n, d = shape[0], math.prod(shape[1:])
        vals = 2 * torch.rand((n, d), generator=generator, device=device, dtype=dtype) - 1
        keys = torch.rand((n, d), generator=generator, device=device)
        k = torch.as_tensor(eps, device=device).floor().long().clamp(0, d).expand(n)
        rank = keys.argsort(dim=1).argsort(dim=1)  # a uniformly random support of size k
        return torch.where(rank < k[:, None], vals, torch.zeros_like(vals)).reshape(shape)


NORMS: dict[str, type[Norm]] = {"linf": LinfNorm, "l2": L2Norm, "l1": L1Norm, "l0": L0Norm}


def get_norm(name: str) -> Norm:
    """Return the :class:`Norm` strategy called ``name`` (``"linf" | "l2" | "l1" | "l0"``)."""
    key = str(name).lower()
    aliases = {"inf": "linf", "li": "linf", "2": "l2", "1": "l1", "0": "l0"}
    key = aliases.get(key, key)
    if key not in NORMS:
        raise ValueError(f"unknown norm {name!r}; use one of {sorted(NORMS)}")
    return NORMS[key]()


@dataclass(frozen=True)
class ThreatModel:
    """A norm ball of radius ``eps`` intersected with the input box ``bounds``.

    Args:
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        eps: radius of the ball, ``>= 0``.
        bounds: ``(lower, upper)`` valid input range; ``(0, 1)`` for images.
    """

    norm: str
    eps: float
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        strategy = get_norm(self.norm)
        object.__setattr__(self, "norm", strategy.name)
        if isinstance(self.eps, bool):
            raise TypeError(f"eps must be a number, got the bool {self.eps}")
        try:
            eps = float(self.eps)
        except (TypeError, ValueError):
            raise TypeError(f"eps must be a number, got {type(self.eps).__name__}") from None
        if not math.isfinite(eps) or eps < 0:
            raise ValueError(f"eps must be a finite number >= 0, got {self.eps}")
        object.__setattr__(self, "eps", eps)
        lo, hi = (float(b) for b in self.bounds)
        if not lo < hi:
            raise ValueError(f"bounds must satisfy lower < upper, got {self.bounds}")
        object.__setattr__(self, "bounds", (lo, hi))

    @property
    def strategy(self) -> Norm:
        """The :class:`Norm` strategy of this threat model."""
        return get_norm(self.norm)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Map ``x_adv`` into the ball around ``x`` and then into ``bounds``."""
        delta = self.strategy.project(x_adv - x, self.eps)
        return torch.clamp(x + delta, *self.bounds)

    def contains(self, x_adv: torch.Tensor, x: torch.Tensor, tol: float = 1e-5) -> torch.Tensor:
        """Per-sample check that ``x_adv`` is an allowed perturbation of ``x``."""
        lo, hi = self.bounds
        # float32 rounding grows with the magnitude of the inputs and, for L2/L1, with the
        # number of coordinates that are summed
        d = x[0].numel() if x.shape[0] else 1
        if self.norm == "l0":  # a count: no rounding slack
            dist_ok = self.strategy.distance(x_adv, x) <= math.floor(self.eps)
        else:
            factor = {"linf": 1.0, "l2": d ** 0.5, "l1": float(d)}[self.norm]
            atol = max(tol, 4e-7 * max(1.0, abs(lo), abs(hi)) * factor)
            dist_ok = self.strategy.distance(x_adv, x) <= self.eps * (1 + tol) + atol
        box_ok = ((x_adv >= lo - tol) & (x_adv <= hi + tol)).flatten(1).all(dim=1)
        return dist_ok & box_ok

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly description."""
        return {"norm": self.norm, "eps": self.eps, "bounds": list(self.bounds)}

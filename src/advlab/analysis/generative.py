"""Generative models are not enough: two mixtures, same likelihood, different posteriors.

Fit a mixture of two Gaussians and a mixture of two Laplacians to the same
bimodal 1-D data and read each mixture's components as classes. Their
likelihoods are nearly equal, so maximum likelihood cannot choose between them,
yet far from the data the Gaussian mixture's posterior ``p(y | x)`` is certain
(its log-odds grow linearly in ``x``) while the Laplace mixture's stays near its
prior (its log-odds level off). Good density modelling alone does not give
sensible confidence off the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from advlab.analysis._common import check_generator

__all__ = ["MixtureFit", "fit_mixture", "bimodal_data", "GenerativeComparison",
           "generative_comparison", "FAMILIES"]

FAMILIES = ("gaussian", "laplace")


@dataclass
class MixtureFit:
    """A fitted two-component 1-D mixture (components ordered by location).

    Attributes:
        family: ``"gaussian"`` or ``"laplace"``.
        weights, locs, scales: per component (scale: standard deviation / Laplace ``b``).
        mean_log_likelihood: average log-density of the training data.
        iterations: EM iterations run.
    """

    family: str
    weights: torch.Tensor
    locs: torch.Tensor
    scales: torch.Tensor
    mean_log_likelihood: float
    iterations: int

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x, y=c)`` for both components, shape ``(N, 2)``."""
        return _log_joint(self.family, x.double(), self.weights, self.locs, self.scales)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.log_joint(x), dim=1)

    def posterior(self, x: torch.Tensor) -> torch.Tensor:
        """``p(y = c | x)``, shape ``(N, 2)``."""
        return torch.softmax(self.log_joint(x), dim=1)

    def to_dict(self) -> dict[str, object]:
        return {"family": self.family, "weights": self.weights.tolist(),
                "locs": self.locs.tolist(), "scales": self.scales.tolist(),
                "mean_log_likelihood": self.mean_log_likelihood, "iterations": self.iterations}


def _log_joint(family: str, x: torch.Tensor, w: torch.Tensor, mu: torch.Tensor,
               s: torch.Tensor) -> torch.Tensor:
    d = x[:, None] - mu[None]
    if family == "gaussian":
        lp = -0.5 * (d / s).pow(2) - torch.log(s) - 0.5 * math.log(2 * math.pi)
    else:
        lp = -d.abs() / s - torch.log(2 * s)
    return lp + torch.log(w)[None]


def _weighted_median(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(x)
    cw = torch.cumsum(w[order], 0)
    i = int(torch.searchsorted(cw, cw[-1] / 2))
    return x[order][min(i, x.numel() - 1)]


def fit_mixture(data: torch.Tensor, family: str = "gaussian", *, tied_scale: bool = True,
                iters: int = 200, tol: float = 1e-8) -> MixtureFit:
    """Fit a two-component mixture by expectation-maximisation.

    Args:
        data: 1-D samples.
        family: ``"gaussian"`` (M-step: weighted means and variances) or ``"laplace"``
            (M-step: weighted medians and mean absolute deviations).
        tied_scale: one scale shared by both components (the classic "shared covariance"
            class-conditional model); otherwise one per component.
        iters: maximum EM iterations; tol: stop when the log-likelihood gains less.

    Returns:
        :class:`MixtureFit`.

    References:
        Dempster, Laird & Rubin, "Maximum Likelihood from Incomplete Data via the EM
        Algorithm", JRSS-B 1977.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    x = torch.as_tensor(data).double().reshape(-1)
    if x.numel() < 4 or not torch.isfinite(x).all():
        raise ValueError("data must hold at least 4 finite samples")
    n = x.numel()
    mu = torch.stack([torch.quantile(x, 0.25), torch.quantile(x, 0.75)])
    s = torch.full((2,), float(x.std()) / 2).clamp_min(1e-6)
    w = torch.full((2,), 0.5, dtype=torch.float64)
    prev = -math.inf
    it = 0
    for it in range(1, iters + 1):  # noqa: B007
        lj = _log_joint(family, x, w, mu, s)
        ll = torch.logsumexp(lj, dim=1)
        r = torch.exp(lj - ll[:, None])
        nk = r.sum(0).clamp_min(1e-12)
        w = nk / n
        if family == "gaussian":
            mu = (r * x[:, None]).sum(0) / nk
            dev = r * (x[:, None] - mu[None]).pow(2)
            s = (dev.sum() / n).sqrt().expand(2).clone() if tied_scale else (dev.sum(0) / nk).sqrt()
        else:
            mu = torch.stack([_weighted_median(x, r[:, c]) for c in range(2)])
            dev = r * (x[:, None] - mu[None]).abs()
            s = (dev.sum() / n).expand(2).clone() if tied_scale else dev.sum(0) / nk
        s = s.clamp_min(1e-6)
        cur = float(ll.mean())
        if abs(cur - prev) < tol:
            break
        prev = cur
    mean_ll = float(torch.logsumexp(_log_joint(family, x, w, mu, s), dim=1).mean())
    order = torch.argsort(mu)
    return MixtureFit(family=family, weights=w[order], locs=mu[order], scales=s[order],
                      mean_log_likelihood=mean_ll, iterations=it)


def bimodal_data(n: int = 2000, *, separation: float = 1.0, scale: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` samples from ``0.5 Laplace(-separation/2, scale) + 0.5 Laplace(+separation/2, scale)``.

    Laplace components give a bimodal density (two sharp peaks) even when they overlap
    strongly, which is the regime where the two mixture families fit equally well.
    """
    check_generator(generator)
    if not isinstance(n, int) or n < 4:
        raise ValueError(f"n must be an integer >= 4, got {n!r}")
    side = torch.randint(0, 2, (n,), generator=generator).double() * 2 - 1
    u = torch.rand(n, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12) - 0.5
    lap = -scale * torch.sign(u) * torch.log1p(-2 * u.abs())
    return side * separation / 2 + lap


@dataclass
class GenerativeComparison:
    """Both fits on the same data, their densities and posteriors on a grid.

    Attributes:
        data: the samples; gaussian, laplace: the two fits.
        grid: positions ``(G,)``; density_gaussian, density_laplace: ``p(x)`` there.
        posterior_gaussian, posterior_laplace: ``p(y = right component | x)`` there.
        far: the positions ``(-far_x, +far_x)`` far from the data; far_posterior_*:
            ``max_c p(y=c | x)`` at both (how certain each model is there).
    """

    data: torch.Tensor
    gaussian: MixtureFit
    laplace: MixtureFit
    grid: torch.Tensor
    density_gaussian: torch.Tensor
    density_laplace: torch.Tensor
    posterior_gaussian: torch.Tensor
    posterior_laplace: torch.Tensor
    far: torch.Tensor
    far_posterior_gaussian: torch.Tensor
    far_posterior_laplace: torch.Tensor

    @property
    def log_likelihood_gap(self) -> float:
        """Mean log-likelihood per sample, Laplace minus Gaussian."""
        return self.laplace.mean_log_likelihood - self.gaussian.mean_log_likelihood

    def to_dict(self) -> dict[str, object]:
        return {"n": int(self.data.numel()), "gaussian": self.gaussian.to_dict(),
                "laplace": self.laplace.to_dict(), "log_likelihood_gap": self.log_likelihood_gap,
                "far": self.far.tolist(),
                "far_posterior_gaussian": self.far_posterior_gaussian.tolist(),
                "far_posterior_laplace": self.far_posterior_laplace.tolist()}


def generative_comparison(
    data: torch.Tensor | None = None,
    *,
    n: int = 2000,
    far_x: float | None = None,
    grid: Sequence[float] | None = None,
    tied_scale: bool = True,
    generator: torch.Generator | None = None,
) -> GenerativeComparison:
    """Fit both mixtures to the same data and compare likelihood and posteriors.

    Args:
        data: 1-D samples; default :func:`bimodal_data` with ``n`` samples.
        n: sample count for the default data.
        far_x: how far is "far from the data" (default: 10 times the data's largest
            absolute value).
        grid: positions for the density/posterior curves (default spans ``+-far_x``).
        tied_scale: shared scale per mixture (see :func:`fit_mixture`).
        generator: for the default data.

    Returns:
        :class:`GenerativeComparison`.

    References:
        Goodfellow, "Adversarial Examples and Adversarial Training", lecture (CS231n,
        2017), slide "Generative modeling is not sufficient".
    """
    x = bimodal_data(n, generator=generator) if data is None else torch.as_tensor(data).double()
    g = fit_mixture(x, "gaussian", tied_scale=tied_scale)
    lap = fit_mixture(x, "laplace", tied_scale=tied_scale)
    fx = float(far_x) if far_x is not None else 10 * float(x.abs().max())
    gr = torch.linspace(-fx, fx, 801, dtype=torch.float64) if grid is None else \
        torch.as_tensor(list(grid), dtype=torch.float64)
    far = torch.tensor([-fx, fx], dtype=torch.float64)
    return GenerativeComparison(
        data=x, gaussian=g, laplace=lap, grid=gr, density_gaussian=g.log_density(gr).exp(),
        density_laplace=lap.log_density(gr).exp(), posterior_gaussian=g.posterior(gr)[:, 1],
        posterior_laplace=lap.posterior(gr)[:, 1], far=far,
        far_posterior_gaussian=g.posterior(far).amax(1),
        far_posterior_laplace=lap.posterior(far).amax(1))

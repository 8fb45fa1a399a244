"""2-D decision maps around test examples (Warde-Farley & Goodfellow 2016).

For every test example ``x`` the map shows the predicted class on the plane
``x + a u + b v`` for ``a, b`` in ``[-eps, eps]``: ``u`` is the fast-gradient-sign
direction and ``v`` a random direction orthogonal to it (or a second adversarial
direction, or both random). Adversarial examples fill broad half-spaces along
``u``, not thin pockets, while random directions rarely change the class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advlab.analysis._common import check_generator, flat_dot, input_gradient, logits_of
from advlab.validation import eval_mode

__all__ = ["DecisionMaps", "decision_maps", "map_directions", "MAP_KINDS"]

#: the direction pairs: (horizontal, vertical)
MAP_KINDS = ("adversarial-random", "adversarial-adversarial", "random-random")


@dataclass
class DecisionMaps:
    """Predicted classes on a grid around each example.

    Attributes:
        kind: one of :data:`MAP_KINDS`.
        eps: the axes cover ``[-eps, eps]`` (max-norm units of a ``+-1`` direction).
        coords: the ``R`` grid coordinates along each axis.
        predictions: int64 ``(N, R, R)``; ``predictions[i, r, c]`` is the class at
            ``x_i + coords[c] * u_i + coords[r] * v_i`` (row = vertical axis).
        labels: true classes ``(N,)``.
        clean_correct: whether the clean input is classified correctly ``(N,)``.
        misclassified_fraction: per map, the share of cells not predicted as the true class.
        cosines: per example, cosine between ``v`` and the loss gradient (the vertical
            axis' alignment; about 0 for a random direction).
    """

    kind: str
    eps: float
    coords: torch.Tensor
    predictions: torch.Tensor
    labels: torch.Tensor
    clean_correct: torch.Tensor
    misclassified_fraction: torch.Tensor
    cosines: torch.Tensor

    @property
    def mean_misclassified(self) -> float:
        """Share of all cells (of all maps) that are misclassified."""
        return float(self.misclassified_fraction.mean()) if self.labels.numel() else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "eps": self.eps, "resolution": int(self.coords.numel()),
                "n_maps": int(self.labels.numel()), "mean_misclassified": self.mean_misclassified,
                "misclassified_fraction": [round(float(v), 4) for v in self.misclassified_fraction],
                "clean_accuracy": float(self.clean_correct.float().mean()) if self.labels.numel()
                else None,
                "mean_cosine_vertical_gradient": float(self.cosines.mean()) if self.labels.numel()
                else None}


def _orthogonal_to(v: torch.Tensor, u: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """``v`` minus its projection on ``u`` (per sample), rescaled to the L2 norm of ``u``.

    Where ``v`` is (nearly) parallel to ``u`` the same is done with ``fallback``.
    """
    shape1 = (-1, *([1] * (u.ndim - 1)))

    def resid(a: torch.Tensor) -> torch.Tensor:
        coef = flat_dot(a, u) / flat_dot(u, u).clamp_min(1e-30)
        return a - coef.reshape(shape1) * u

    w = resid(v)
    small = w.flatten(1).norm(dim=1) <= 1e-6 * v.flatten(1).norm(dim=1).clamp_min(1e-30)
    if bool(small.any()):
        w = torch.where(small.reshape(shape1), resid(fallback), w)
    scale = u.flatten(1).norm(dim=1) / w.flatten(1).norm(dim=1).clamp_min(1e-30)
    return w * scale.reshape(shape1)


def map_directions(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, kind: str = "adversarial-random",
    *, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The horizontal and vertical directions of the maps, and the loss gradient.

    ``u`` is ``sign(grad)`` (or a random ``+-1`` image for ``random-random``); ``v`` is
    orthogonal to ``u`` with the same L2 norm: the component of a Gaussian random image
    (``*-random``) or of the gradient itself (``adversarial-adversarial``: the orthogonal
    direction with the largest dot product with the gradient).
    """
    if kind not in MAP_KINDS:
        raise ValueError(f"unknown map kind {kind!r}; use one of {MAP_KINDS}")
    check_generator(generator)
    with eval_mode(model, "analysis"):
        _, g = input_gradient(model, x, lambda z: F.cross_entropy(z, labels, reduction="none"))
    rand = torch.randint(0, 2, x.shape, generator=generator).to(x.dtype) * 2 - 1
    gauss = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    if kind == "random-random":
        u = rand
        v = _orthogonal_to(gauss, u, torch.randn(x.shape, generator=generator, dtype=x.dtype))
    else:
        u = g.sign()
        # samples with a zero gradient get a random horizontal direction
        zero = (g.flatten(1).abs().sum(1) == 0).reshape(-1, *([1] * (x.ndim - 1)))
        u = torch.where(zero, rand, u)
        v = _orthogonal_to(g if kind == "adversarial-adversarial" else gauss, u, gauss)
    return u, v, g


def decision_maps(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    kind: str = "adversarial-random",
    eps: float = 0.3,
    resolution: int = 21,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
) -> DecisionMaps:
    """Predicted class on a ``resolution x resolution`` grid around each example.

    Args:
        model: classifier returning logits.
        x: inputs ``(N, C, H, W)`` in ``bounds``.
        labels: true classes ``(N,)``.
        kind: ``"adversarial-random"`` (FGSM direction x random orthogonal direction),
            ``"adversarial-adversarial"`` (FGSM direction x the orthogonal direction most
            aligned with the gradient) or ``"random-random"``.
        eps: half-width of the map along each axis (directions are ``+-1``-scaled, so
            ``eps`` on the horizontal adversarial axis is an FGSM step of max norm ``eps``).
        resolution: grid points per axis (odd values put the clean input at the centre).
        bounds: clip every grid point into this box; ``None`` leaves the box (known-answer
            checks on linear models).
        generator: for the random directions.
        batch_size: forward batch size.

    Returns:
        :class:`DecisionMaps`.

    References:
        Warde-Farley & Goodfellow, "Adversarial Perturbations of Deep Neural Networks",
        in Perturbations, Optimization, and Statistics, MIT Press, 2016.
        Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
        ICLR 2015.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError("x and labels must be torch.Tensor objects")
    if x.ndim < 2 or labels.shape != (x.shape[0],):
        raise ValueError(f"need a batch x (N, ...) and labels (N,), got {tuple(x.shape)} and "
                         f"{tuple(labels.shape)}")
    if not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    u, v, g = map_directions(model, x, labels, kind, generator=generator)
    coords = torch.linspace(-eps, eps, resolution, dtype=x.dtype)
    bb, aa = torch.meshgrid(coords, coords, indexing="ij")  # rows: vertical b, cols: horizontal a
    a, b = aa.reshape(-1), bb.reshape(-1)
    n, cells = x.shape[0], resolution * resolution
    preds = torch.empty((n, cells), dtype=torch.long)
    shape1 = (-1, *([1] * (x.ndim - 1)))
    with eval_mode(model, "analysis"):
        per = max(1, batch_size // cells)
        for s in range(0, n, per):
            xs, us, vs = x[s:s + per], u[s:s + per], v[s:s + per]
            pts = (xs[:, None] + a.reshape(1, *shape1) * us[:, None]
                   + b.reshape(1, *shape1) * vs[:, None])
            pts = pts.reshape(-1, *x.shape[1:])
            if bounds is not None:
                pts = pts.clamp(*bounds)
            preds[s:s + per] = logits_of(model, pts, batch_size).argmax(1).reshape(-1, cells)
        clean = logits_of(model, x, batch_size).argmax(1) == labels
    preds = preds.reshape(n, resolution, resolution)
    frac = (preds != labels[:, None, None]).float().mean(dim=(1, 2))
    cos = flat_dot(v, g) / (v.flatten(1).norm(dim=1) * g.flatten(1).norm(dim=1)).clamp_min(1e-30)
    return DecisionMaps(kind=kind, eps=float(eps), coords=coords, predictions=preds,
                        labels=labels.clone(), clean_correct=clean, misclassified_fraction=frac,
                        cosines=cos)

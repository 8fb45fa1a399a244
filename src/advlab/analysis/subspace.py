"""Dimensionality of the adversarial subspace: gradient-aligned adversarial subspaces.

Tramer et al. (2017) find, around an input ``x`` with loss gradient ``g``, ``k``
orthonormal directions ``r_1..r_k`` that all have the largest possible equal
alignment with ``g`` (``r_i . g = ||g|| / sqrt(k)``) and count how many of
``x + eps r_i`` are misclassified. On MNIST about 25 such orthogonal directions
are adversarial per image on average, and many of them transfer to another
model: adversarial examples span a subspace, which is why they transfer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advlab.analysis._common import check_generator, input_gradient, logits_of
from advlab.validation import eval_mode

__all__ = ["gaas_directions", "SubspaceResult", "adversarial_subspace", "DEFAULT_KS"]

DEFAULT_KS = (1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100)


def gaas_directions(grad: torch.Tensor, k: int, *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``k`` orthonormal directions, each with dot product ``||grad|| / sqrt(k)`` with ``grad``.

    Builds an orthonormal basis ``B = [g/||g||, b_2, ..., b_k]`` (random completion) and
    rotates it with the Householder reflection ``H`` that maps ``e_1`` to
    ``(1, ..., 1) / sqrt(k)``: the rows of ``H B^T`` are orthonormal and each has
    component ``1/sqrt(k)`` along ``g``, the largest equal alignment ``k`` orthonormal
    vectors can share.

    Args:
        grad: the gradient, any shape with ``D >= k`` elements.
        k: number of directions.
        generator: for the random completion of the basis.

    Returns:
        ``(k, *grad.shape)`` tensor of unit-L2-norm directions.

    References:
        Tramer, Papernot, Goodfellow, Boneh & McDaniel, "The Space of Transferable
        Adversarial Examples", arXiv:1704.03453, 2017 (GAAS, L2 version).
    """
    check_generator(generator)
    d = grad.numel()
    if not isinstance(k, int) or not 1 <= k <= d:
        raise ValueError(f"k must be an integer in [1, {d}], got {k!r}")
    g = grad.reshape(-1).double()
    gn = g.norm()
    if float(gn) == 0:
        raise ValueError("the gradient is zero: no direction is aligned with it")
    u = g / gn
    if k == 1:
        return u.to(grad.dtype).reshape(1, *grad.shape)
    m = torch.cat([u[:, None], torch.randn((d, k - 1), generator=generator, dtype=torch.float64)], 1)
    q, r = torch.linalg.qr(m)
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0,
                                                torch.ones(k, dtype=torch.float64))[None]
    a = torch.full((k,), 1 / math.sqrt(k), dtype=torch.float64)
    w = -a
    w[0] += 1.0
    h = torch.eye(k, dtype=torch.float64) - 2 * torch.outer(w, w) / w.dot(w)
    dirs = h @ q.t()
    return dirs.to(grad.dtype).reshape(k, *grad.shape)


@dataclass
class SubspaceResult:
    """Adversarial directions found by GAAS per example.

    Attributes:
        eps: L2 length of every perturbation; ks: the numbers of directions tried.
        n: examples analysed (those the model, and the transfer model if any, classify
            correctly).
        counts: adversarial directions among the ``k`` for every ``k`` ``(n, len(ks))``;
            ``-1`` where skipped (larger ``k`` after a ``k`` with none).
        n_adversarial: per example, the largest count over ``k``.
        best_k: per example, the ``k`` achieving it.
        n_transfer: per example, how many of those adversarial directions also fool the
            second model (``None`` without one).
    """

    eps: float
    ks: list[int]
    n: int
    counts: torch.Tensor
    n_adversarial: torch.Tensor
    best_k: torch.Tensor
    n_transfer: torch.Tensor | None

    @property
    def mean_adversarial(self) -> float:
        return float(self.n_adversarial.float().mean()) if self.n else math.nan

    @property
    def mean_transfer(self) -> float | None:
        if self.n_transfer is None:
            return None
        return float(self.n_transfer.float().mean()) if self.n else math.nan

    def to_dict(self) -> dict[str, object]:
        return {"eps": self.eps, "norm": "l2", "ks": self.ks, "n": self.n,
                "mean_adversarial": self.mean_adversarial, "mean_transfer": self.mean_transfer,
                "n_adversarial": self.n_adversarial.tolist(),
                "n_transfer": None if self.n_transfer is None else self.n_transfer.tolist(),
                "share_with_any": float((self.n_adversarial > 0).float().mean()) if self.n
                else None}


def _scan_ks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor,
             ks: list[int], eps: float, bounds: tuple[float, float] | None,
             generator: torch.Generator | None,
             batch_size: int) -> tuple[list[int], torch.Tensor | None]:
    """Misclassified GAAS points of one example for each ``k`` until one gives none.

    Returns the counts per tried ``k`` and the misclassified points of the best ``k``
    (the first with the largest count; ``None`` when no ``k`` found any).
    """
    row: list[int] = []
    best, best_pts = 0, None
    for k in ks:
        if k > grad.numel():
            break
        dirs = gaas_directions(grad, k, generator=generator)
        pts = x[None] + eps * dirs
        if bounds is not None:
            pts = pts.clamp(*bounds)
        wrong = logits_of(model, pts, batch_size).argmax(1) != y
        c = int(wrong.sum())
        row.append(c)
        if c > best:
            best, best_pts = c, pts[wrong]
        if c == 0:
            break
    return row, best_pts


def adversarial_subspace(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float = 5.0,
    ks: Sequence[int] = DEFAULT_KS,
    transfer_model: nn.Module | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
    batch_size: int = 1000,
) -> SubspaceResult:
    """Count orthogonal adversarial directions per example (GAAS, L2).

    For every correctly classified example and every ``k`` in ``ks`` (increasing), build
    :func:`gaas_directions` from the cross-entropy gradient, evaluate ``x + eps r_i``
    (clipped to ``bounds``) and count the misclassified ones. Once a ``k`` gives no
    adversarial direction, larger ``k`` (weaker alignment) are skipped.

    Args:
        model: classifier returning logits.
        x, labels: inputs ``(N, C, H, W)`` and classes.
        eps: L2 length of each perturbation.
        ks: numbers of directions to try, increasing.
        transfer_model: optional second model; the adversarial directions of the best ``k``
            are evaluated on it too (an input misclassified by it counts as transferred).
        bounds: clip perturbed inputs into this box; ``None`` does not clip.
        generator: for the random completion of each basis.
        batch_size: forward batch size.

    Returns:
        :class:`SubspaceResult`.

    References:
        Tramer, Papernot, Goodfellow, Boneh & McDaniel, "The Space of Transferable
        Adversarial Examples", arXiv:1704.03453, 2017.
    """
    check_generator(generator)
    ks = [int(k) for k in ks]
    if not ks or any(b <= a for a, b in zip(ks, ks[1:], strict=False)) or ks[0] < 1:
        raise ValueError("ks must be a non-empty increasing list of positive integers")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if labels.shape != (x.shape[0],):
        raise ValueError("labels must have shape (N,)")
    other_mode = (eval_mode(transfer_model, "analysis") if transfer_model is not None
                  else contextlib.nullcontext())
    with eval_mode(model, "analysis"), other_mode:
        ok = logits_of(model, x, batch_size).argmax(1) == labels
        if transfer_model is not None:
            ok &= logits_of(transfer_model, x, batch_size).argmax(1) == labels
        xs, ys = x[ok], labels[ok]
        _, grads = input_gradient(model, xs, lambda z: F.cross_entropy(z, ys, reduction="none"))
        n = xs.shape[0]
        counts = torch.full((n, len(ks)), -1, dtype=torch.long)
        best = torch.zeros(n, dtype=torch.long)
        best_k = torch.zeros(n, dtype=torch.long)
        trans = torch.zeros(n, dtype=torch.long) if transfer_model is not None else None
        for i in range(n):
            if float(grads[i].abs().sum()) == 0:
                counts[i, 0] = 0
                continue
            row, best_pts = _scan_ks(model, xs[i], ys[i], grads[i], ks, eps, bounds, generator,
                                     batch_size)
            for j, c in enumerate(row):
                counts[i, j] = c
                if c > best[i]:
                    best[i], best_k[i] = c, ks[j]
            if trans is not None and transfer_model is not None and best_pts is not None:
                tw = logits_of(transfer_model, best_pts, batch_size).argmax(1) != ys[i]
                trans[i] = int(tw.sum())
    return SubspaceResult(eps=float(eps), ks=ks, n=int(n), counts=counts, n_adversarial=best,
                          best_k=best_k, n_transfer=trans)

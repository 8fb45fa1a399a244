"""1-D cross sections of the logits along a direction through a clean input.

Goodfellow, Shlens & Szegedy (2014) plot the logits of a network along
``x + t d`` for the fast-gradient-sign direction ``d``: they are piecewise
linear in ``t``, and far from the data the logit of some wrong class keeps
growing linearly. This module computes such a cross section and counts its
linear pieces (changes of the activation pattern of the piecewise-linear units).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advlab.analysis._common import check_generator, input_gradient
from advlab.models.zoo import Maxout
from advlab.validation import check_logits, eval_mode

__all__ = ["CrossSection", "cross_section", "fgsm_direction", "random_sign_direction",
           "activation_patterns", "count_linear_pieces"]


@dataclass
class CrossSection:
    """Logits along the path ``x + t d``.

    Attributes:
        t: the ``steps`` positions along the direction, shape ``(T,)``.
        logits: logits at every position, shape ``(T, classes)``.
        direction: the direction ``d`` (same shape as one input).
        label: the true class of ``x`` (``-1`` if unknown).
        predicted: predicted class at every position, shape ``(T,)``.
        n_pieces: linear pieces seen along the sampled path (activation-pattern changes + 1);
            a lower bound that becomes exact as ``steps`` grows.
        breakpoints: positions ``t`` (midpoints between samples) where the pattern changes.
        n_units: number of tracked piecewise-linear units (0: the model is linear or has no
            ReLU/max-pool/maxout modules).
        tail_slope: per-class slope of the logit over the outer half ``t >= T/2``.
        tail_r2: per-class coefficient of determination of a straight-line fit there
            (1.0 means exactly linear).
    """

    t: torch.Tensor
    logits: torch.Tensor
    direction: torch.Tensor
    label: int
    predicted: torch.Tensor
    n_pieces: int
    breakpoints: list[float]
    n_units: int
    tail_slope: torch.Tensor
    tail_r2: torch.Tensor

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly summary (logits included, rounded)."""
        return {
            "t": [round(float(v), 5) for v in self.t],
            "logits": [[round(float(v), 4) for v in row] for row in self.logits],
            "label": self.label, "predicted": self.predicted.tolist(),
            "n_pieces": self.n_pieces, "breakpoints": [round(b, 5) for b in self.breakpoints],
            "n_units": self.n_units, "tail_slope": [float(v) for v in self.tail_slope],
            "tail_r2": [float(v) for v in self.tail_r2],
        }


def fgsm_direction(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``sign(grad_x CE(model(x), labels))`` for a batch: the FGSM direction (unit max norm).

    References:
        Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
        ICLR 2015 (arXiv:1412.6572).
    """
    with eval_mode(model, "analysis"):
        _, g = input_gradient(model, x, lambda z: F.cross_entropy(z, labels, reduction="none"))
    return g.sign()


def random_sign_direction(shape: torch.Size | tuple[int, ...], *,
                          generator: torch.Generator | None = None,
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A random ``+-1`` image (same max and L2 norm as an FGSM direction)."""
    check_generator(generator)
    return torch.randint(0, 2, tuple(shape), generator=generator).to(dtype) * 2 - 1


def _hooks(model: nn.Module, store: list[torch.Tensor]) -> list[torch.utils.hooks.RemovableHandle]:
    handles = []

    def relu_hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        store.append((inp[0] > 0).flatten(1).to(torch.int64))

    def pool_hook(mod: nn.MaxPool2d, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        _, idx = F.max_pool2d(inp[0], mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                              ceil_mode=mod.ceil_mode, return_indices=True)
        store.append(idx.flatten(1))

    def maxout_hook(mod: Maxout, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        z = mod.linear(inp[0]).reshape(inp[0].shape[0], mod.out_features, mod.pieces)
        store.append(z.argmax(dim=2).flatten(1))

    for m in model.modules():
        if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.Hardtanh, nn.ReLU6)):
            handles.append(m.register_forward_hook(relu_hook))
        elif isinstance(m, nn.MaxPool2d):
            handles.append(m.register_forward_hook(pool_hook))  # type: ignore[arg-type]
        elif isinstance(m, Maxout):
            handles.append(m.register_forward_hook(maxout_hook))  # type: ignore[arg-type]
    return handles


@torch.no_grad()
def activation_patterns(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the activation pattern of every piecewise-linear unit, per input.

    Tracked modules: ``nn.ReLU`` (and its leaky/clipped variants: which side of zero),
    ``nn.MaxPool2d`` (which input wins each window) and advlab's ``Maxout`` (which piece
    wins). Within one pattern the network is an affine function of its input. Activations
    applied functionally (``F.relu``) are not seen.

    Returns:
        ``(logits, patterns)`` where ``patterns`` is an int64 tensor ``(N, units)``
        (``units`` may be 0).
    """
    store: list[torch.Tensor] = []
    handles = _hooks(model, store)
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    pat = torch.cat(store, dim=1) if store else torch.zeros((x.shape[0], 0), dtype=torch.int64)
    return logits, pat


def count_linear_pieces(patterns: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Number of pieces along a sampled path and the indices ``i`` where ``i -> i+1`` changes."""
    if patterns.shape[0] < 2 or patterns.shape[1] == 0:
        return 1, torch.zeros(0, dtype=torch.long)
    change = (patterns[1:] != patterns[:-1]).any(dim=1)
    idx = change.nonzero().squeeze(1)
    return 1 + int(idx.numel()), idx


def _line_fit(t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slope and R^2 of least-squares lines through the columns of ``y`` against ``t``."""
    t = t.double()
    y = y.double()
    tc = t - t.mean()
    yc = y - y.mean(dim=0)
    slope = (tc[:, None] * yc).sum(0) / tc.pow(2).sum().clamp_min(1e-30)
    resid = yc - slope[None] * tc[:, None]
    ss_tot = yc.pow(2).sum(0)
    r2 = torch.where(ss_tot > 1e-12, 1 - resid.pow(2).sum(0) / ss_tot.clamp_min(1e-30),
                     torch.ones_like(ss_tot))
    return slope.float(), r2.float()


def cross_section(
    model: nn.Module,
    x: torch.Tensor,
    direction: torch.Tensor,
    *,
    span: float = 1.0,
    steps: int = 401,
    label: int = -1,
    batch_size: int = 1000,
) -> CrossSection:
    """Logits of ``model`` along ``x + t * direction`` for ``t`` in ``[-span, span]``.

    The path is not clipped to the input box: following the lecture, it deliberately
    leaves the data to show that the logits keep growing linearly far from it.

    Args:
        model: classifier returning logits.
        x: one input, shape ``(C, H, W)`` or ``(1, C, H, W)``.
        direction: same shape as ``x`` (e.g. :func:`fgsm_direction` or
            :func:`random_sign_direction`; with a ``+-1`` direction ``t`` is the max-norm
            size of the step).
        span: ``T``, the path covers ``[-T, T]``.
        steps: number of evenly spaced positions (``>= 2``).
        label: the true class, kept in the result.
        batch_size: forward batch size.

    Returns:
        A :class:`CrossSection`.

    References:
        Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
        ICLR 2015 (arXiv:1412.6572), figure 4 (arXiv v1) / the lecture's "linear pieces".
    """
    if not isinstance(x, torch.Tensor) or not isinstance(direction, torch.Tensor):
        raise TypeError("x and direction must be torch.Tensor objects")
    if x.ndim >= 4:
        if x.shape[0] != 1:
            raise ValueError(f"cross_section takes one input, got a batch of {x.shape[0]};"
                             " call it once per example")
        x = x[0]
    if direction.ndim == x.ndim + 1 and direction.shape[0] == 1:
        direction = direction[0]
    if direction.shape != x.shape:
        raise ValueError(f"direction has shape {tuple(direction.shape)} but x has {tuple(x.shape)}")
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    if not span > 0:
        raise ValueError(f"span must be > 0, got {span}")
    t = torch.linspace(-span, span, steps, dtype=x.dtype)
    pts = x[None] + t.reshape(-1, *([1] * x.ndim)) * direction[None]
    logits_parts, pat_parts = [], []
    with eval_mode(model, "analysis"):
        for s in range(0, steps, batch_size):
            lg, pt = activation_patterns(model, pts[s:s + batch_size])
            logits_parts.append(lg)
            pat_parts.append(pt)
    logits = torch.cat(logits_parts)
    check_logits(logits[:2], 2)
    pats = torch.cat(pat_parts)
    n_pieces, idx = count_linear_pieces(pats)
    breaks = [float((t[i] + t[i + 1]) / 2) for i in idx.tolist()]
    tail = t >= span / 2
    slope, r2 = _line_fit(t[tail], logits[tail])
    return CrossSection(t=t, logits=logits, direction=direction.clone(), label=int(label),
                        predicted=logits.argmax(1), n_pieces=n_pieces, breakpoints=breaks,
                        n_units=int(pats.shape[1]), tail_slope=slope, tail_r2=r2)

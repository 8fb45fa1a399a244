"""Linear models are fooled by ``eps * sign(w)``: the linearity explanation.

For a linear score ``w.x + b`` the change ``eps * sign(w)`` moves the score by
``eps * ||w||_1``, which grows with the input dimension although no pixel
changes by more than ``eps``. Binary logistic regression on 3s vs 7s is the
lecture's example (Goodfellow et al. 2014, figure 2); the sign of a class's
weights is also a universal perturbation that pushes many images towards it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advlab.analysis._common import logits_of
from advlab.models.zoo import LogisticRegression, SoftmaxRegression
from advlab.validation import check_inputs, eval_mode

__all__ = ["linear_weights", "LogisticSignResult", "logistic_sign_attack", "UniversalSignResult",
           "universal_sign_perturbation"]


def linear_weights(model: nn.Module) -> torch.Tensor:
    """Input-space weights of a linear model, shape ``(K, C, H, W)``.

    For :class:`~advlab.models.SoftmaxRegression` one template per class; for
    :class:`~advlab.models.LogisticRegression` one row ``w`` with
    ``logit(class 1) - logit(class 0) = w.x + b``. The input normalization is folded in.
    """
    if isinstance(model, LogisticRegression):
        return model.weight[None].clone()
    if isinstance(model, SoftmaxRegression):
        w = model.linear.weight.detach().reshape(-1, *model.in_shape)
        std: torch.Tensor = model.normalize.std  # type: ignore[assignment]
        return w / std.reshape(1, -1, 1, 1)
    raise TypeError(f"linear_weights needs a SoftmaxRegression or LogisticRegression, "
                    f"got {type(model).__name__}")


@dataclass
class LogisticSignResult:
    """Binary logistic regression under ``x +- eps sign(w)``.

    Attributes:
        weight: ``w`` in input space ``(C, H, W)``; sign: ``sign(w)``.
        eps: the max-norm size of the change.
        n: number of examples.
        clean_error: error rate on the clean inputs.
        adv_error: error rate on ``x - eps * sign(w) * (2y - 1)`` (each example pushed
            towards the other class), clipped to ``bounds``.
        share_class1_plus, share_class1_minus: share of ``x + eps sign(w)`` /
            ``x - eps sign(w)`` predicted as class 1.
        score_shift: ``eps * ||w||_1``, how far the unclipped change moves every score.
        examples: a few ``(x, x + eps sign(w), x - eps sign(w))`` triples ``(k, 3, C, H, W)``.
        example_predictions: their predicted classes ``(k, 3)``.
    """

    weight: torch.Tensor
    sign: torch.Tensor
    eps: float
    n: int
    clean_error: float
    adv_error: float
    share_class1_plus: float
    share_class1_minus: float
    score_shift: float
    examples: torch.Tensor
    example_predictions: torch.Tensor

    def to_dict(self) -> dict[str, object]:
        return {"eps": self.eps, "n": self.n, "clean_error": self.clean_error,
                "adv_error": self.adv_error, "share_class1_plus": self.share_class1_plus,
                "share_class1_minus": self.share_class1_minus, "score_shift": self.score_shift,
                "weight_l1": float(self.weight.abs().sum())}


def logistic_sign_attack(
    model: LogisticRegression,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 0.25,
    *,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    n_examples: int = 4,
) -> LogisticSignResult:
    """Error of binary logistic regression on ``x +- eps * sign(w)``.

    Moving against the true class (``-sign(w)`` for class 1, ``+sign(w)`` for class 0)
    is exactly FGSM for this model, because the input gradient of its loss is a
    multiple of ``w``.

    Args:
        model: a trained :class:`~advlab.models.LogisticRegression`.
        x: inputs ``(N, C, H, W)``; labels: ``0``/``1`` classes ``(N,)``.
        eps: max-norm size of the change.
        bounds: clip the changed inputs into this box (``None``: no clipping, the exact
            linear picture).
        n_examples: how many example triples to keep for a figure.

    Returns:
        :class:`LogisticSignResult`.

    References:
        Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
        ICLR 2015 (arXiv:1412.6572), figure 2: 1.6% error on clean 3s vs 7s, 99% at
        ``eps = 0.25``.
    """
    if not isinstance(model, LogisticRegression):
        raise TypeError(f"logistic_sign_attack needs a LogisticRegression, got {type(model).__name__}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    check_inputs(model, x, bounds or (float("-inf"), float("inf")))
    if labels.shape != (x.shape[0],) or (labels.numel() and int(labels.max()) > 1):
        raise ValueError("labels must be a (N,) tensor of 0/1 classes")
    w = model.weight
    s = w.sign()

    def clip(t: torch.Tensor) -> torch.Tensor:
        return t.clamp(*bounds) if bounds is not None else t

    toward_other = (1 - 2 * labels).to(x.dtype).reshape(-1, 1, 1, 1)  # +1 for class 0, -1 for 1
    x_adv = clip(x + eps * toward_other * s)
    x_plus, x_minus = clip(x + eps * s), clip(x - eps * s)
    with eval_mode(model, "analysis"):
        p_clean = logits_of(model, x).argmax(1)
        p_adv = logits_of(model, x_adv).argmax(1)
        p_plus = logits_of(model, x_plus).argmax(1)
        p_minus = logits_of(model, x_minus).argmax(1)
    k = min(n_examples, x.shape[0])
    ex = torch.stack([x[:k], x_plus[:k], x_minus[:k]], dim=1)
    ex_pred = torch.stack([p_clean[:k], p_plus[:k], p_minus[:k]], dim=1)

    def mean(t: torch.Tensor) -> float:
        return float(t.float().mean()) if t.numel() else float("nan")

    return LogisticSignResult(
        weight=w, sign=s, eps=float(eps), n=int(x.shape[0]), clean_error=mean(p_clean != labels),
        adv_error=mean(p_adv != labels), share_class1_plus=mean(p_plus == 1),
        share_class1_minus=mean(p_minus == 1), score_shift=float(eps * w.abs().sum()),
        examples=ex, example_predictions=ex_pred)


@dataclass
class UniversalSignResult:
    """The sign of one class's weights added to every image.

    Attributes:
        target: the class whose weight sign is added; eps: its max-norm size.
        perturbation: ``eps * sign(w_target)`` ``(C, H, W)``.
        n: images of other classes that were classified correctly (the attacked set).
        fooling_rate: share of those now predicted as ``target``.
        changed_rate: share of those whose prediction changed at all.
    """

    target: int
    eps: float
    perturbation: torch.Tensor
    n: int
    fooling_rate: float
    changed_rate: float

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "eps": self.eps, "n": self.n,
                "fooling_rate": self.fooling_rate, "changed_rate": self.changed_rate}


def universal_sign_perturbation(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    target: int,
    eps: float = 0.25,
    *,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> UniversalSignResult:
    """Add ``eps * sign(w_target)`` of a linear model to every image of another class.

    For logistic regression ``w_1 = w`` and ``w_0 = -w``. One image-independent change
    sends many images to ``target``: a universal perturbation that needs no per-image
    optimisation, because the model is linear.

    References:
        Goodfellow, Shlens & Szegedy, ICLR 2015 (sign of the weights); Moosavi-Dezfooli
        et al., "Universal adversarial perturbations", CVPR 2017.
    """
    w = linear_weights(model)
    if isinstance(model, LogisticRegression):
        w = torch.cat([-w, w])
    if not 0 <= int(target) < w.shape[0]:
        raise ValueError(f"target must be a class in [0, {w.shape[0] - 1}], got {target}")
    pert = eps * w[int(target)].sign()
    with eval_mode(model, "analysis"):
        pred = logits_of(model, x).argmax(1)
        keep = (labels != target) & (pred == labels)
        xa = x[keep] + pert[None]
        if bounds is not None:
            xa = xa.clamp(*bounds)
        pa = logits_of(model, xa).argmax(1) if xa.shape[0] else torch.zeros(0, dtype=torch.long)
    n = int(keep.sum())
    return UniversalSignResult(
        target=int(target), eps=float(eps), perturbation=pert, n=n,
        fooling_rate=float((pa == target).float().mean()) if n else float("nan"),
        changed_rate=float((pa != labels[keep]).float().mean()) if n else float("nan"))

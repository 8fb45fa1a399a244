"""The lecture's remaining claims as functions: X's and O's, linear vs deep adversarial
training, and where to put the adversarial perturbation.

* **X's and O's** (the "overfitting vs linearity" slide): a 2-D toy with a C-shaped
  manifold of O's and a line of X's (:func:`xs_and_os_toy`). If adversarial examples came
  from overfitting, two high-capacity fits would make *different* mistakes off the data
  (:func:`off_data_agreement`) and each point would need its own perturbation; if they
  come from linearity, one offset moves many points across (:func:`offset_flips`) and a
  linear model is confident far from any data (:func:`corner_confidence`).
* **Linear vs deep adversarial training**: for logistic regression, the FGSM objective
  equals ``softplus(eps ||w||_1 - margin)`` (:func:`logistic_adversarial_loss`), i.e. an
  L1 penalty inside the loss: it shrinks the weights but cannot make the model robust.
* **Where to perturb**: :class:`LayerFGSMTraining` trains with the fast-gradient step taken
  at the input, at a hidden layer or at the logits.

References:
    Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
    ICLR 2015 (arXiv:1412.6572): sections 5-6 (linear models, deep networks), and
    Goodfellow's lecture "Adversarial Examples and Adversarial Training" (CS231n, 2017),
    the X's and O's slides and the Q&A on perturbing hidden layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.analysis._common import check_generator, input_gradient, logits_of
from advlab.attacks.base import store_settings
from advlab.defenses.adversarial_training import perturb_fgsm, unwrap
from advlab.models.zoo import LogisticRegression, training_loss
from advlab.threat import ThreatModel

__all__ = ["xs_and_os_toy", "ToyMLP", "toy_linear", "fit_toy", "off_data_agreement",
           "OffsetFlips", "offset_flips", "per_point_flips", "corner_confidence",
           "XsOsResult", "xs_and_os", "logistic_adversarial_loss", "weight_sparsity",
           "LAYERS", "LayerFGSMTraining", "PUBLISHED_AT"]

#: Goodfellow et al. (2014), MNIST, FGSM at eps = 0.25: error rates of the maxout network
#: before and after adversarial training (section 6), and the published claim on linear models.
PUBLISHED_AT = {
    "maxout_fgsm_error_before": 0.894, "maxout_fgsm_error_after": 0.179,
    "maxout_clean_error_before": 0.0094, "maxout_clean_error_after": 0.0084,
}


# ============================================================================= the toy


def xs_and_os_toy(n_o: int = 60, n_x: int = 30, noise: float = 0.04,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The X's and O's: O's on a C-shaped arc (radius 1, open to the right), X's on a line.

    The arc spans angles 60..300 degrees around the origin; the X's lie on the vertical
    segment ``x1 = 1.3, x2 in [-0.8, 0.8]``, in the mouth of the C. Both get Gaussian
    jitter of std ``noise``.

    Args:
        n_o: number of O's (label 0).
        n_x: number of X's (label 1).
        noise: jitter std.
        generator: random source (global RNGs are not touched).

    Returns:
        ``(points (n_o + n_x, 2), labels)``, O's first.
    """
    check_generator(generator)
    if n_o < 2 or n_x < 2:
        raise ValueError(f"n_o and n_x must be >= 2, got {n_o}, {n_x}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    ang = torch.linspace(math.pi / 3, 5 * math.pi / 3, n_o, dtype=torch.float64)
    o = torch.stack([ang.cos(), ang.sin()], dim=1)
    x = torch.stack([torch.full((n_x,), 1.3, dtype=torch.float64),
                     torch.linspace(-0.8, 0.8, n_x, dtype=torch.float64)], dim=1)
    pts = torch.cat([o, x]).float()
    pts = pts + noise * torch.randn(pts.shape, generator=generator)
    labels = torch.cat([torch.zeros(n_o, dtype=torch.long), torch.ones(n_x, dtype=torch.long)])
    return pts, labels


class ToyMLP(nn.Module):
    """A wide ReLU network on 2-D points (the toy's high-capacity model), two logits."""

    def __init__(self, width: int = 256, depth: int = 3) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got {width}, {depth}")
        layers: list[nn.Module] = []
        d = 2
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"ToyMLP expects points of shape (N, 2), got {tuple(x.shape)}")
        return self.net(x)


def toy_linear() -> nn.Module:
    """The toy's linear model: two logits ``W x + b`` (softmax = logistic regression)."""
    return nn.Linear(2, 2)


def _init(model: nn.Module, generator: torch.Generator | None) -> None:
    """PyTorch's default uniform init of every ``nn.Linear``, drawn from ``generator``."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                m.weight.copy_((torch.rand(m.weight.shape, generator=generator) * 2 - 1) * bound)
                m.bias.copy_((torch.rand(m.bias.shape, generator=generator) * 2 - 1) * bound)


def fit_toy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 600, lr: float = 1e-2,
            generator: torch.Generator | None = None) -> nn.Module:
    """Initialise ``model``'s linear layers from ``generator`` and fit it full-batch (Adam,
    cross-entropy, no regularisation: a high-capacity model is free to overfit).

    Returns:
        ``model``, trained in place and left in eval mode.
    """
    check_generator(generator)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    _init(model, generator)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _grid(box: float, resolution: int) -> torch.Tensor:
    t = torch.linspace(-box, box, resolution)
    g1, g2 = torch.meshgrid(t, t, indexing="xy")
    return torch.stack([g1.reshape(-1), g2.reshape(-1)], dim=1)


def off_data_agreement(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, *, box: float = 3.0,
                       resolution: int = 121, min_dist: float = 0.5) -> dict[str, float]:
    """How often two models agree on a grid, far from the data and near it.

    Args:
        model_a, model_b: classifiers of 2-D points.
        x: the data points ``(N, 2)``.
        box: the grid spans ``[-box, box]^2``.
        resolution: grid points per side.
        min_dist: a grid point is "off the data" when its nearest data point is at least
            this far (L2); "near" when closer than ``min_dist / 2``.

    Returns:
        ``{"far": agreement rate off the data, "near": agreement near it,
        "far_share": share of the grid off the data}``.
    """
    if not min_dist > 0:
        raise ValueError(f"min_dist must be > 0, got {min_dist}")
    g = _grid(box, resolution)
    d = torch.cdist(g, x.float()).amin(dim=1)
    agree = logits_of(model_a, g).argmax(1) == logits_of(model_b, g).argmax(1)
    far, near = d >= min_dist, d < min_dist / 2
    return {"far": float(agree[far].float().mean()) if far.any() else float("nan"),
            "near": float(agree[near].float().mean()) if near.any() else float("nan"),
            "far_share": float(far.float().mean())}


def _loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return input_gradient(model, x, lambda lg: F.cross_entropy(lg, y, reduction="none"))[1]


def _unit(v: torch.Tensor) -> torch.Tensor:
    n = v.norm()
    return v / n if n > 0 else v


@dataclass
class OffsetFlips:
    """:func:`offset_flips`: one L2 offset per class, the same for every point of the class.

    Attributes:
        eps: the offset's L2 length.
        offsets: ``(num_classes, 2)``, row ``c`` added to every point of class ``c``.
        flipped: per point, whether its (correct) prediction changed.
        share: share of correctly classified points flipped.
        moved: the shifted points ``x + offsets[y]``.
    """

    eps: float
    offsets: torch.Tensor
    flipped: torch.Tensor
    share: float
    moved: torch.Tensor


def offset_flips(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> OffsetFlips:
    """One shared offset per class: ``eps`` times the unit mean loss gradient of that class.

    For a linear two-class model with score ``z = w.x + b`` every point of a class has
    the same gradient direction ``-+w``, so a correctly classified point flips exactly
    when its distance to the boundary ``|z| / ||w||`` is below ``eps``; for a wiggly,
    overfit model the gradients point every which way and one offset moves few points.

    Args:
        model: classifier of ``(N, d)`` points.
        x: points; y: labels.
        eps: L2 length of each offset (``>= 0``).

    Returns:
        :class:`OffsetFlips`.

    References:
        Goodfellow et al. 2014 (linearity), and the lecture's X's and O's slide.
    """
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    grad = _loss_gradient(model, x, y)
    pred = logits_of(model, x).argmax(1)
    k = int(y.max()) + 1
    offsets = torch.stack([eps * _unit(grad[y == c].mean(0)) if (y == c).any()
                           else grad.new_zeros(x.shape[1]) for c in range(k)])
    moved = x + offsets[y]
    new = logits_of(model, moved).argmax(1)
    ok = pred == y
    flipped = ok & (new != y)
    share = float(flipped[ok].float().mean()) if ok.any() else float("nan")
    return OffsetFlips(float(eps), offsets, flipped, share, moved)


def per_point_flips(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    eps: float) -> tuple[float, torch.Tensor]:
    """Each point moved ``eps`` (L2) along its own loss gradient (FGM): share of correctly
    classified points flipped, and the moved points. The reference for :func:`offset_flips`."""
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    grad = _loss_gradient(model, x, y)
    norm = grad.norm(dim=1, keepdim=True)
    moved = x + eps * torch.where(norm > 0, grad / norm.clamp_min(1e-30), torch.zeros_like(grad))
    ok = logits_of(model, x).argmax(1) == y
    flipped = ok & (logits_of(model, moved).argmax(1) != y)
    return (float(flipped[ok].float().mean()) if ok.any() else float("nan")), moved


def corner_confidence(model: nn.Module, radius: float) -> torch.Tensor:
    """Confidence (softmax max) at the four corners ``radius * (+-1, +-1)``: empty space.

    A linear model's confidence there tends to 1 as ``radius`` grows (unless a corner lies
    on the boundary's direction): it is most confident where it has seen nothing.
    """
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    c = radius * torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    return torch.softmax(logits_of(model, c), dim=1).amax(dim=1)


@dataclass
class XsOsResult:
    """:func:`xs_and_os`: the toy, three fits and the measurements of both stories.

    Attributes:
        x, y: the toy data.
        models: ``{"deep A", "deep B", "linear"}`` fits (A and B differ only in seed).
        eps: L2 budget of the offsets and per-point steps.
        agreement: :func:`off_data_agreement` of deep A vs B and of two linear fits.
        offsets: :func:`offset_flips` per model.
        per_point: per-point FGM flip share per model.
        per_point_moved: the per-point adversarial points of each model.
        disagree: grid points off the data where deep A and B disagree (a sample).
        corner_conf: mean corner confidence per model at each of ``radii``.
        radii: corner distances.
        box: the half-width of the maps.
        train_acc: training accuracy per model.
        sweep: per budget of ``sweep_eps``, per model, ``(offset share, per-point share)``.
    """

    x: torch.Tensor
    y: torch.Tensor
    models: dict[str, nn.Module]
    eps: float
    agreement: dict[str, dict[str, float]]
    offsets: dict[str, OffsetFlips]
    per_point: dict[str, float]
    per_point_moved: dict[str, torch.Tensor]
    disagree: torch.Tensor
    corner_conf: dict[str, list[float]]
    radii: list[float]
    box: float
    train_acc: dict[str, float]
    sweep: dict[float, dict[str, tuple[float, float]]]

    def to_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "n": int(self.x.shape[0]), "box": self.box, "radii": self.radii,
                "agreement": self.agreement, "train_acc": self.train_acc,
                "rows": [{"model": k, "train_acc": self.train_acc[k],
                          "offset_share": self.offsets[k].share, "per_point_share": self.per_point[k],
                          "corner_conf": self.corner_conf[k]} for k in self.models],
                "sweep": [{"eps": e, **{k: {"offset_share": v[0], "per_point_share": v[1]}
                                        for k, v in row.items()}} for e, row in self.sweep.items()]}


def xs_and_os(*, eps: float = 0.6, width: int = 256, steps: int = 600, box: float = 3.0,
              radii: Sequence[float] = (2.0, 5.0, 20.0), resolution: int = 121,
              sweep_eps: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.0),
              generator: torch.Generator | None = None) -> XsOsResult:
    """The X's and O's experiment: two wide ReLU fits (different seeds) and a linear fit.

    Measures, for the overfitting story, whether the two high-capacity fits share their
    off-data decisions (:func:`off_data_agreement`) and, for the linearity story, the share
    of points one shared offset moves across (:func:`offset_flips`, against the per-point
    step of :func:`per_point_flips`) and the confidence in the empty corners
    (:func:`corner_confidence`).

    Args:
        eps: L2 budget of the maps' adversarial points (the C has radius 1; the gap between
            its tips and the X's is 0.8).
        sweep_eps: budgets of the flip-share sweep.
        width: width of the high-capacity fits (three hidden layers).
        steps: full-batch Adam steps of each fit.
        box: half-width of the agreement grid (and the maps).
        radii: corner distances for the confidence.
        resolution: agreement-grid points per side.
        generator: the data and the seeds of the fits.

    References:
        Goodfellow, Shlens & Szegedy 2014; Goodfellow's CS231n lecture (2017), the
        "adversarial examples from overfitting / from excessive linearity" slides.
    """
    check_generator(generator)
    x, y = xs_and_os_toy(generator=generator)
    seeds = torch.randint(0, 2**31 - 1, (4,), generator=generator).tolist()
    g = [torch.Generator().manual_seed(int(s)) for s in seeds]
    with torch.random.fork_rng(devices=[]):  # building a layer draws default weights from the
        nets = [ToyMLP(width), ToyMLP(width), toy_linear(), toy_linear()]  # global RNG; fit_toy redraws
    models: dict[str, nn.Module] = {
        "deep A": fit_toy(nets[0], x, y, steps=steps, generator=g[0]),
        "deep B": fit_toy(nets[1], x, y, steps=steps, generator=g[1]),
        "linear": fit_toy(nets[2], x, y, steps=steps, lr=5e-2, generator=g[2]),
    }
    linear_b = fit_toy(nets[3], x, y, steps=steps, lr=5e-2, generator=g[3])
    agreement = {"deep A vs deep B": off_data_agreement(models["deep A"], models["deep B"], x, box=box,
                                                        resolution=resolution),
                 "linear vs linear (other seed)": off_data_agreement(models["linear"], linear_b, x,
                                                                     box=box, resolution=resolution)}
    grid = _grid(box, resolution)
    far = torch.cdist(grid, x).amin(dim=1) >= 0.5
    dis = far & (logits_of(models["deep A"], grid).argmax(1) != logits_of(models["deep B"], grid).argmax(1))
    disagree = grid[dis][:: max(1, int(dis.sum()) // 300)]
    offsets, per_point, moved, conf, acc = {}, {}, {}, {}, {}
    for k, m in models.items():
        offsets[k] = offset_flips(m, x, y, eps)
        per_point[k], moved[k] = per_point_flips(m, x, y, eps)
        conf[k] = [float(corner_confidence(m, r).mean()) for r in radii]
        acc[k] = float((logits_of(m, x).argmax(1) == y).float().mean())
    sweep = {float(e): {k: (offset_flips(m, x, y, e).share, per_point_flips(m, x, y, e)[0])
                        for k, m in models.items()} for e in sweep_eps}
    return XsOsResult(x, y, models, float(eps), agreement, offsets, per_point, moved, disagree, conf,
                      [float(r) for r in radii], float(box), acc, sweep)


# ============================================================================= linear vs deep


def logistic_adversarial_loss(model: LogisticRegression, x: torch.Tensor, y: torch.Tensor,
                              eps: float) -> torch.Tensor:
    """Per-example FGSM loss of binary logistic regression in closed form (no clipping).

    With labels ``s = 2y - 1`` and score ``z = w.x + b``, the worst max-norm change of size
    ``eps`` is ``-eps s sign(w)`` and the loss is ``softplus(eps ||w||_1 - s z)``: adversarial
    training of a linear model is the clean loss with an L1 penalty *inside* the softplus
    (it acts like L1 weight decay, subtracted from the margin rather than added to the loss).

    References:
        Goodfellow, Shlens & Szegedy 2014, section 5, eq. (6).
    """
    if not isinstance(model, LogisticRegression):
        raise TypeError(f"model must be a LogisticRegression, got {type(model).__name__}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    w = model.weight.reshape(-1)
    lg = logits_of(model, x)
    z = lg[:, 1] - lg[:, 0]
    s = 2 * y.to(z.dtype) - 1
    return F.softplus(eps * w.abs().sum() - s * z)


def weight_sparsity(weights: torch.Tensor, rel: float = 0.01) -> dict[str, float]:
    """L1 norm per row (class) and the share of weights below ``rel`` times the largest |w|."""
    w = weights.reshape(weights.shape[0], -1).abs()
    return {"l1_per_class": float(w.sum(1).mean()), "max_abs": float(w.max()),
            "near_zero_share": float((w < rel * w.max()).float().mean())}


# ============================================================================= where to perturb

#: where :class:`LayerFGSMTraining` perturbs
LAYERS = ("input", "hidden", "logits")


def _split(model: nn.Module, at: int | None) -> tuple[nn.Module, nn.Module]:
    """``(body, head)`` of a zoo MLP/maxout network: ``head(body(x)) == model(x)``
    (``at``: modules of ``model.net`` in the body; ``None``: all of them, the logits)."""
    net = getattr(model, "net", None)
    norm = getattr(model, "normalize", None)
    if not isinstance(net, nn.Sequential) or not isinstance(norm, nn.Module):
        raise TypeError(f"{type(model).__name__} has no .normalize and .net Sequential; use an MLP or "
                        "maxout network from advlab.models")
    if at is None:
        at = len(net)
    if not 0 < at <= len(net):
        raise ValueError(f"split index must be in 1..{len(net)}, got {at}")
    body = nn.Sequential(norm, nn.Flatten(1), *net[:at])
    return body, net[at:]


def _scale(t: torch.Tensor) -> torch.Tensor:
    return t.detach().std().clamp_min(1e-12)


class LayerFGSMTraining:
    """FGSM adversarial training with the fast-gradient step at the input, a hidden layer or the logits.

    The loss is ``alpha J(x) + (1 - alpha) J'``, where ``J'`` is the loss after adding
    ``eps_l * sign(grad)`` to the chosen layer's activations ``h`` (gradient of the loss
    w.r.t. ``h``, input and weights fixed). At the input this is Goodfellow et al.'s objective
    (:class:`~advlab.defenses.FGSMTraining`, clipped to ``bounds``); at a layer, ``eps`` is
    rescaled to the layer: ``eps_l = eps * std(h) / std(x)`` over the batch (the same size
    relative to the layer's spread as ``eps`` is to the pixels'), without clipping.

    Args:
        eps: the input-space budget (``>= 0``).
        layer: ``"input"``, ``"hidden"`` or ``"logits"``.
        hidden_index: for ``"hidden"``, how many modules of ``model.net`` come before the
            perturbation (2: after the first ReLU of an MLP).
        alpha: weight of the clean loss, in ``[0, 1]``.
        bounds: the input box (input layer only).

    References:
        Goodfellow, Shlens & Szegedy 2014, section 6 (perturbing hidden layers: Szegedy et
        al. 2014 found it regularises best; Goodfellow et al. perturb the input), and
        Goodfellow's CS231n lecture (2017), Q&A ("perturbing the last layer usually just
        breaks the whole process").
    """

    name = "layer-fgsm"

    def __init__(self, eps: float = 0.25, layer: str = "input", hidden_index: int = 2, alpha: float = 0.5,
                 bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        store_settings(self, locals())

    def validate(self) -> None:
        """Raise ``ValueError`` on bad settings."""
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not self.eps >= 0:
            raise ValueError(f"eps must be a number >= 0, got {self.eps!r}")
        if self.layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, got {self.layer!r}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if isinstance(self.hidden_index, bool) or not isinstance(self.hidden_index, int):
            raise ValueError(f"hidden_index must be an integer, got {self.hidden_index!r}")

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"defense": self.name}
        for k, v in vars(self).items():
            if not k.startswith("_"):
                out[k] = list(v) if isinstance(v, tuple) else v
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        self.validate()
        alpha, eps = float(self.alpha), float(self.eps)
        inner = unwrap(model)
        n = x.shape[0]
        if self.layer == "input":
            was = inner.training
            inner.eval()
            try:
                x_adv = perturb_fgsm(inner, x, y, ThreatModel("linf", eps, tuple(self.bounds)))
            finally:
                inner.train(was)
            logits = model(torch.cat([x, x_adv]))
            clean, adv = logits[:n], logits[n:]
        else:
            body, head = _split(inner, None if self.layer == "logits" else int(self.hidden_index))
            h = body(x)
            eps_l = eps * _scale(h) / _scale(x.float())
            grad = input_gradient(head, h.detach(), lambda lg: training_loss(inner, lg, y) * n)[1]
            clean = head(h)
            adv = head(h + eps_l * grad.sign())
        loss = alpha * training_loss(inner, clean, y) + (1 - alpha) * training_loss(inner, adv, y)
        return loss, clean, 3

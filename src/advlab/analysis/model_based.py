"""Model-based optimisation finds adversarial examples for the model.

Train a regressor on samples of a known function, then maximise the regressor's
prediction over its input by gradient ascent. The optimiser finds where the
*model* is most wrong, not where the function is high: the predicted value at the
optimum far exceeds the true one. A model used as a "universal engineering
machine" (design the input that maximises a learned score) must be robust to
adversarial inputs first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from advlab.analysis._common import check_generator

__all__ = ["mean_sine", "ModelBasedResult", "model_based_optimization", "fit_regressor"]


def mean_sine(x: torch.Tensor) -> torch.Tensor:
    """The default known function ``mean_i sin(x_i)``.

    On the training box ``[-1, 1]^d`` it rises towards the edge; its maximum 1 is at
    ``x_i = pi/2``, just outside, and it falls again beyond (``sin 3 = 0.14``).
    """
    return torch.sin(x).mean(dim=1)


def _init(model: nn.Module, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                bound = 1 / math.sqrt(m.in_features)
                m.weight.copy_((torch.rand(m.weight.shape, generator=generator) * 2 - 1) * bound)
                m.bias.copy_((torch.rand(m.bias.shape, generator=generator) * 2 - 1) * bound)


def fit_regressor(x: torch.Tensor, y: torch.Tensor, *, hidden: Sequence[int] = (64, 64),
                  epochs: int = 300, lr: float = 1e-2, batch_size: int | None = None,
                  generator: torch.Generator | None = None) -> nn.Sequential:
    """A ReLU MLP regressor ``R^d -> R`` trained with Adam on squared error.

    Initialization and batch order use ``generator`` (global RNGs are not touched).
    ``hidden=()`` gives a linear regressor; ``batch_size=None`` trains full-batch.
    """
    check_generator(generator)
    layers: list[nn.Module] = []
    width = x.shape[1]
    with torch.random.fork_rng(devices=[]):  # layers draw default weights; _init redraws them
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, 1))
    net = nn.Sequential(*layers).to(x.dtype)
    _init(net, generator)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    n = x.shape[0]
    batch_size = batch_size or n
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            loss = (net(x[idx]).squeeze(1) - y[idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@dataclass
class ModelBasedResult:
    """Gradient ascent on a learned regressor versus the true function.

    Attributes:
        dim: input dimension; data_box: training inputs are uniform in ``[-a, a]^dim``;
        search_box: the ascent is clipped to ``[-b, b]^dim``.
        n_train: training samples; train_mse, test_mse: fit quality on the data box.
        optima: the ascent's end points ``(R, dim)`` from ``R`` random starts.
        predicted, true: regressor and true function at each optimum.
        best: index of the optimum with the highest prediction.
        true_max: the function's maximum (``1`` for :func:`mean_sine`).
        regressor: the fitted model.
    """

    dim: int
    data_box: float
    search_box: float
    n_train: int
    train_mse: float
    test_mse: float
    optima: torch.Tensor
    predicted: torch.Tensor
    true: torch.Tensor
    best: int
    true_max: float
    regressor: nn.Module

    @property
    def best_predicted(self) -> float:
        return float(self.predicted[self.best])

    @property
    def best_true(self) -> float:
        return float(self.true[self.best])

    def to_dict(self) -> dict[str, object]:
        return {"dim": self.dim, "data_box": self.data_box, "search_box": self.search_box,
                "n_train": self.n_train, "train_mse": self.train_mse, "test_mse": self.test_mse,
                "best_predicted": self.best_predicted, "best_true": self.best_true,
                "true_max": self.true_max, "best_optimum": self.optima[self.best].tolist(),
                "predicted": [float(v) for v in self.predicted],
                "true": [float(v) for v in self.true]}


def model_based_optimization(
    fn: Callable[[torch.Tensor], torch.Tensor] = mean_sine,
    *,
    dim: int = 2,
    n_train: int = 500,
    data_box: float = 1.0,
    search_box: float = 3.0,
    restarts: int = 8,
    steps: int = 200,
    step_size: float = 0.05,
    true_max: float = 1.0,
    hidden: Sequence[int] = (64, 64),
    epochs: int = 200,
    regressor: nn.Module | None = None,
    generator: torch.Generator | None = None,
) -> ModelBasedResult:
    """Fit a regressor to samples of ``fn`` and maximise the regressor by gradient ascent.

    Args:
        fn: the known function, ``(N, dim) -> (N,)``.
        dim: input dimension.
        n_train: training samples, uniform in ``[-data_box, data_box]^dim``.
        data_box: half-width of the training region.
        search_box: half-width of the region the ascent may explore (``>= data_box``).
        restarts: random starting points (inside the data box).
        steps, step_size: signed-gradient ascent steps on the prediction.
        true_max: the known maximum of ``fn`` (for the report).
        hidden, epochs: regressor width and training length.
        regressor: reuse an already fitted regressor (e.g. ``result.regressor`` of an earlier
            call on the same function) instead of fitting a new one.
        generator: data, initialization and starts.

    Returns:
        :class:`ModelBasedResult`.

    References:
        Goodfellow, "Adversarial Examples and Adversarial Training", lecture (CS231n,
        2017): model-based optimization, the "universal engineering machine".
    """
    check_generator(generator)
    if search_box < data_box or data_box <= 0:
        raise ValueError("need 0 < data_box <= search_box")
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    dt = torch.float32
    x = (torch.rand((n_train, dim), generator=generator, dtype=dt) * 2 - 1) * data_box
    y = fn(x)
    net = regressor if regressor is not None else fit_regressor(x, y, hidden=hidden, epochs=epochs,
                                                                 generator=generator)
    xt = (torch.rand((2000, dim), generator=generator, dtype=dt) * 2 - 1) * data_box
    with torch.no_grad():
        train_mse = float((net(x).squeeze(1) - y).pow(2).mean())
        test_mse = float((net(xt).squeeze(1) - fn(xt)).pow(2).mean())
    cur = (torch.rand((restarts, dim), generator=generator, dtype=dt) * 2 - 1) * data_box
    for _ in range(steps):
        xg = cur.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(net(xg).sum(), xg)
        cur = (cur + step_size * g.sign()).clamp(-search_box, search_box)
    with torch.no_grad():
        pred = net(cur).squeeze(1)
        true = fn(cur)
    return ModelBasedResult(dim=dim, data_box=float(data_box), search_box=float(search_box),
                            n_train=n_train, train_mse=train_mse, test_mse=test_mse, optima=cur,
                            predicted=pred, true=true, best=int(pred.argmax()),
                            true_max=float(true_max), regressor=net)

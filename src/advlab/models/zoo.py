"""The models of the lecture. All take [0, 1] inputs of shape ``(N, C, H, W)`` and return logits.

The RBF network returns per-class log-odds ``log p / (1 - p)``, which are valid
logits for attacks and ``argmax``; its ``output_kind`` is ``"logodds"`` so
training uses per-class sigmoid cross-entropy and confidence uses the sigmoid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from advlab.models.layers import Normalize

__all__ = [
    "SoftmaxRegression",
    "LogisticRegression",
    "MLP",
    "MadryCNN",
    "Maxout",
    "MaxoutMLP",
    "RBFNetwork",
]


class _Base(nn.Module):
    output_kind = "logits"

    def __init__(self, in_shape: Sequence[int], num_classes: int,
                 mean: Sequence[float] | float, std: Sequence[float] | float) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"in_shape must be (C, H, W), got {tuple(in_shape)}")
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        self.normalize = Normalize(mean, std, channels=self.in_shape[0])

    @property
    def in_features(self) -> int:
        return math.prod(self.in_shape)

    def _check(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (N, {', '.join(map(str, self.in_shape))}),"
                f" got {tuple(x.shape)}"
            )


class SoftmaxRegression(_Base):
    """Multinomial logistic regression: one linear layer on the pixels.

    References:
        Goodfellow, Shlens & Szegedy 2014 (the "shallow softmax" model).
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 mean: Sequence[float] | float = 0.0, std: Sequence[float] | float = 1.0) -> None:
        super().__init__(in_shape, num_classes, mean, std)
        self.linear = nn.Linear(self.in_features, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.linear(self.normalize(x).flatten(1))


class LogisticRegression(_Base):
    """Binary logistic regression ``p(y=1|x) = sigmoid(w.x + b)``.

    Returns two logits ``(-z/2, z/2)`` so the softmax equals the sigmoid and
    every attack and metric works unchanged; ``weight`` is ``w``.
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 2,
                 mean: Sequence[float] | float = 0.0, std: Sequence[float] | float = 1.0) -> None:
        if num_classes != 2:
            raise ValueError("logistic regression is binary: num_classes must be 2")
        super().__init__(in_shape, 2, mean, std)
        self.linear = nn.Linear(self.in_features, 1)

    @property
    def weight(self) -> torch.Tensor:
        """The weight vector ``w`` in input space (normalization folded in), shape ``in_shape``."""
        w = self.linear.weight.detach().reshape(self.in_shape)
        return w / self.normalize.std.reshape(-1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        z = self.linear(self.normalize(x).flatten(1))
        return torch.cat([-0.5 * z, 0.5 * z], dim=1)


class MLP(_Base):
    """Fully connected ReLU network."""

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 hidden: Sequence[int] = (256, 256),
                 mean: Sequence[float] | float = 0.0, std: Sequence[float] | float = 1.0) -> None:
        super().__init__(in_shape, num_classes, mean, std)
        layers: list[nn.Module] = []
        width = self.in_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, self.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.net(self.normalize(x).flatten(1))


class _TwoConvCNN(_Base):
    """Two convolutional layers that shrink the image 4x, then fc-ReLU-fc (logits)."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, channels: Sequence[int], fc: int,
                 mean: Sequence[float] | float, std: Sequence[float] | float,
                 features: Callable[[int, int, int], nn.Sequential]) -> None:
        super().__init__(in_shape, num_classes, mean, std)
        c1, c2 = (int(c) for c in channels)
        self.features = features(self.in_shape[0], c1, c2)
        h, w = self.in_shape[1] // 4, self.in_shape[2] // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * h * w, int(fc)), nn.ReLU(), nn.Linear(int(fc), num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.classifier(self.features(self.normalize(x)))


class MadryCNN(_TwoConvCNN):
    """The MNIST challenge CNN: conv5x5(32)-pool-conv5x5(64)-pool-fc1024-fc.

    References:
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial
        Attacks", ICLR 2018 (arXiv:1706.06083).
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 channels: Sequence[int] = (32, 64), fc: int = 1024,
                 mean: Sequence[float] | float = 0.0, std: Sequence[float] | float = 1.0) -> None:
        super().__init__(in_shape, num_classes, channels, fc, mean, std, lambda cin, c1, c2: nn.Sequential(
            nn.Conv2d(cin, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        ))


class StridedCNN(_TwoConvCNN):
    """A small all-convolutional MNIST net: conv4x4/2(16)-conv4x4/2(32)-fc100-fc.

    The network Wong et al. train with fast (FGSM-RS) adversarial training on MNIST:
    strided convolutions instead of max-pooling, so the input gradient reaches every
    pixel of each window (max-pooling routes it to one), and a cheap forward pass
    (about 8x fewer multiply-adds than :class:`MadryCNN`).

    References:
        Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial
        training", ICLR 2020 (arXiv:2001.03994).
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 channels: Sequence[int] = (16, 32), fc: int = 100,
                 mean: Sequence[float] | float = 0.0, std: Sequence[float] | float = 1.0) -> None:
        super().__init__(in_shape, num_classes, channels, fc, mean, std, lambda cin, c1, c2: nn.Sequential(
            nn.Conv2d(cin, c1, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
        ))


class Maxout(nn.Module):
    """A maxout layer: ``max_k (W_k x + b_k)`` over ``pieces`` linear pieces.

    References:
        Goodfellow et al., "Maxout Networks", ICML 2013.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x).reshape(x.shape[0], self.out_features, self.pieces)
        return z.amax(dim=2)


class MaxoutMLP(_Base):
    """Maxout network (two maxout layers and a softmax layer), the model of Goodfellow et al. 2014.

    References:
        Goodfellow et al., "Maxout Networks", ICML 2013; Goodfellow, Shlens &
        Szegedy 2014 (MNIST maxout, adversarial training).
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 hidden: Sequence[int] = (240, 240), pieces: int = 5, dropout: float = 0.0,
                 mean: Sequence[float] | float = 0.0, std: Sequence[float] | float = 1.0) -> None:
        super().__init__(in_shape, num_classes, mean, std)
        layers: list[nn.Module] = []
        width = self.in_features
        for h in hidden:
            layers.append(Maxout(width, int(h), int(pieces)))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.net(self.normalize(x).flatten(1))


class RBFNetwork(_Base):
    """Shallow RBF network: one template ``w_c`` per class.

    ``p(class c present | x) = exp(-beta_c * ||x - w_c||^2)``; the forward pass
    returns the log-odds ``log p - log(1 - p)``. Such a unit can only be
    confident near its template, which is why RBF networks resist adversarial
    examples (at the cost of accuracy).

    References:
        Goodfellow, Shlens & Szegedy 2014, section 7 (shallow RBF network on MNIST).
    """

    output_kind = "logodds"

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10,
                 beta: float | None = None,
                 mean: Sequence[float] | float = 0.0, std: Sequence[float] | float = 1.0) -> None:
        super().__init__(in_shape, num_classes, 0.0, 1.0)  # distances in pixel space
        d = self.in_features
        self.templates = nn.Parameter(torch.full((num_classes, d), 0.15))
        init_beta = beta if beta is not None else 1.0 / (0.05 * d)
        self.log_beta = nn.Parameter(torch.full((num_classes,), math.log(init_beta)))

    def sq_distances(self, x: torch.Tensor) -> torch.Tensor:
        """``||x - w_c||^2`` for every class, shape ``(N, classes)``."""
        f = x.flatten(1)
        return (f.pow(2).sum(1, keepdim=True) - 2 * f @ self.templates.t()
                + self.templates.pow(2).sum(1)[None]).clamp_min(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        s = (self.log_beta.exp()[None] * self.sq_distances(x)).clamp_min(1e-6)
        # log p - log(1 - p) with log p = -s
        return -s - torch.log(-torch.expm1(-s))

    def presence(self, x: torch.Tensor) -> torch.Tensor:
        """``p(class present | x)`` per class."""
        return torch.sigmoid(self.forward(x))


def training_loss(model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean training loss for ``model``: softmax CE, or per-class sigmoid CE for log-odds models."""
    if getattr(model, "output_kind", "logits") == "logodds":
        onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, onehot, reduction="sum") / logits.shape[0]
    return F.cross_entropy(logits, labels)


def confidence(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """Confidence in the predicted class: softmax max, or sigmoid for log-odds models."""
    if getattr(model, "output_kind", "logits") == "logodds":
        return torch.sigmoid(logits.amax(dim=1))
    return torch.softmax(logits, dim=1).amax(dim=1)

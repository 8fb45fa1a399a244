"""scikit-learn model families behind one classifier interface.

The transferability experiments of Papernot, McDaniel & Goodfellow (2016) mix
deep networks with logistic regression, support vector machines, decision trees
and k-nearest neighbours. Every model here is a :class:`Classifier`: it takes
``float`` image tensors ``(N, C, H, W)`` in ``[0, 1]`` and ``predict`` returns
``int64`` labels. :class:`TorchClassifier` gives torch models the same face.

Which source attack each family supports (see :mod:`advlab.analysis.transfer`):

* logistic regression and the linear SVM are linear: :meth:`as_module` returns an
  ``nn.Module`` whose logits are exactly the scikit-learn decision function, so every
  gradient attack applies unchanged;
* k-nearest neighbours is piecewise constant: :meth:`SklearnKNN.as_module` returns a
  differentiable relaxation (:class:`KNNRelaxation`) whose logit for class ``c`` is
  minus the mean squared distance to the ``k`` nearest training points of class ``c``;
* a decision tree has no useful gradient at all: it is attacked with
  :class:`advlab.attacks.tree.DecisionTreeAttack` (move to the nearest leaf of another
  class); :meth:`SklearnDecisionTree.as_module` returns ``None``.

These wrappers are deliberately not in the torch :func:`~advlab.models.create_model`
registry: they are fitted by scikit-learn, not by the torch training loop.

References:
    Papernot, McDaniel & Goodfellow, "Transferability in Machine Learning: from
    Phenomena to Black-Box Attacks using Adversarial Samples", arXiv:1605.07277, 2016.
"""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import nn

__all__ = [
    "Classifier",
    "TorchClassifier",
    "SklearnClassifier",
    "SklearnLogisticRegression",
    "SklearnLinearSVM",
    "SklearnDecisionTree",
    "SklearnKNN",
    "LinearModule",
    "KNNRelaxation",
    "SKLEARN_MODELS",
    "create_sklearn_model",
    "as_classifier",
]

log = logging.getLogger(__name__)


@runtime_checkable
class Classifier(Protocol):
    """Anything that labels a batch of ``[0, 1]`` image tensors."""

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``int64`` labels of shape ``(N,)``."""
        ...


def _check_x(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"inputs must be a floating-point tensor in [0, 1], got {x.dtype}"
                        " (convert uint8 images with x.float() / 255)")
    if x.ndim < 2:
        raise ValueError(f"inputs must be batched (N, ...), got shape {tuple(x.shape)}")


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    _check_x(x)
    return x.detach().reshape(x.shape[0], -1).cpu().numpy().astype(np.float32, copy=False)


class TorchClassifier:
    """A torch model seen as a :class:`Classifier` (``predict`` = argmax of the logits).

    Args:
        model: a module returning logits.
        batch_size: inputs per forward pass.
    """

    def __init__(self, model: nn.Module, batch_size: int = 1000) -> None:
        self.model = model
        self.batch_size = batch_size

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        _check_x(x)
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                outs = [self.model(x[s:s + self.batch_size]).argmax(1)
                        for s in range(0, x.shape[0], self.batch_size)]
        finally:
            self.model.train(was)
        return torch.cat(outs) if outs else torch.zeros(0, dtype=torch.long, device=x.device)

    def as_module(self) -> nn.Module:
        return self.model

    def __repr__(self) -> str:
        return f"TorchClassifier({type(self.model).__name__})"


def as_classifier(model: nn.Module | Classifier) -> Classifier:
    """Wrap a torch model in :class:`TorchClassifier`; pass classifiers through."""
    if isinstance(model, nn.Module):
        return TorchClassifier(model)
    if not hasattr(model, "predict"):
        raise TypeError(f"expected an nn.Module or a classifier with .predict(x), "
                        f"got {type(model).__name__}")
    return model


class SklearnClassifier(ABC):
    """Common face of the scikit-learn wrappers: ``fit`` returns ``self``; state ends with ``_``.

    Attributes (after :meth:`fit`):
        estimator_: the fitted scikit-learn estimator.
        in_shape_: input shape ``(C, H, W)`` seen in ``fit``.
        num_classes_: number of classes (labels are ``0 .. num_classes_ - 1``).
    """

    #: short name used in tables (``"LR"``, ``"SVM"``, ``"DT"``, ``"kNN"``)
    short_name: str = ""

    @abstractmethod
    def _make_estimator(self) -> Any:
        """A fresh, unfitted scikit-learn estimator built from the settings."""

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> SklearnClassifier:
        """Fit on images ``x`` (float ``[0, 1]``, ``(N, C, H, W)``) and labels ``y``.

        Returns:
            ``self``.
        """
        xn = _to_numpy(x)
        if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.ndim != 1:
            raise TypeError("labels must be a 1-D integer torch.Tensor")
        if y.shape[0] != xn.shape[0]:
            raise ValueError(f"got {xn.shape[0]} inputs but {y.shape[0]} labels")
        yn = y.cpu().numpy()
        est = self._make_estimator()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            est.fit(xn, yn)
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                log.info("%s: %s", type(self).__name__, w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.estimator_ = est
        self.in_shape_ = tuple(int(s) for s in x.shape[1:])
        self.num_classes_ = int(yn.max()) + 1 if yn.size else 0
        if list(est.classes_) != list(range(self.num_classes_)):
            raise ValueError("training labels must cover every class 0..K-1; got classes "
                             f"{list(est.classes_)}")
        return self

    def _check_fitted(self, x: torch.Tensor) -> None:
        if not hasattr(self, "estimator_"):
            raise ValueError(f"{type(self).__name__} is not fitted yet; call .fit(x, y) first")
        _check_x(x)
        if tuple(x.shape[1:]) != self.in_shape_:
            raise ValueError(f"expected inputs of shape (N, {', '.join(map(str, self.in_shape_))}),"
                             f" got {tuple(x.shape)}")

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``int64`` labels on the device of ``x``."""
        self._check_fitted(x)
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=x.device)
        return torch.from_numpy(self.estimator_.predict(_to_numpy(x)).astype(np.int64)).to(x.device)

    def score(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy on ``(x, y)``."""
        return float((self.predict(x) == y.to(x.device)).float().mean())

    def as_module(self) -> nn.Module | None:
        """A differentiable ``nn.Module`` standing in for this model, or ``None``."""
        return None

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": type(self).__name__}
        out.update({k: v for k, v in vars(self).items() if not k.endswith("_")
                    and not k.startswith("_")})
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "model")
        return f"{type(self).__name__}({args})"


class LinearModule(nn.Module):
    """Logits ``W x + b`` of a fitted linear scikit-learn model (one row per class).

    For two classes scikit-learn keeps one row ``w``; the logits are ``(-z/2, z/2)``
    with ``z = w.x + b``, which has the same argmax and softmax as the binary model.
    """

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, in_shape: tuple[int, ...]) -> None:
        super().__init__()
        w = torch.as_tensor(np.asarray(coef), dtype=torch.float32)
        b = torch.as_tensor(np.asarray(intercept), dtype=torch.float32).reshape(-1)
        if w.shape[0] == 1:
            w = torch.cat([-w / 2, w / 2])
            b = torch.cat([-b / 2, b / 2])
        self.in_shape = tuple(in_shape)
        with torch.random.fork_rng(devices=[]):  # overwritten below: leave the global RNG alone
            self.linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(w)
            self.linear.bias.copy_(b)
        self.linear.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class SklearnLogisticRegression(SklearnClassifier):
    """Multinomial logistic regression (scikit-learn ``LogisticRegression``).

    Args:
        C: inverse L2 regularisation strength.
        max_iter: solver iterations.

    References:
        Papernot, McDaniel & Goodfellow 2016 (the "LR" model of the transfer matrix).
    """

    short_name = "LR"

    def __init__(self, C: float = 1.0, max_iter: int = 200) -> None:
        self.C = C
        self.max_iter = max_iter

    def _make_estimator(self) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, max_iter=self.max_iter)

    def as_module(self) -> nn.Module:
        """An ``nn.Module`` with exactly the decision function of the fitted model."""
        if not hasattr(self, "estimator_"):
            raise ValueError("fit the model before calling as_module()")
        return LinearModule(self.estimator_.coef_, self.estimator_.intercept_, self.in_shape_).eval()


class SklearnLinearSVM(SklearnClassifier):
    """Linear support vector machine, one-vs-rest (scikit-learn ``LinearSVC``).

    Args:
        C: inverse regularisation strength.
        max_iter: solver iterations.

    References:
        Papernot, McDaniel & Goodfellow 2016 (the "SVM" model of the transfer matrix).
    """

    short_name = "SVM"

    def __init__(self, C: float = 0.1, max_iter: int = 2000) -> None:
        self.C = C
        self.max_iter = max_iter

    def _make_estimator(self) -> Any:
        from sklearn.svm import LinearSVC

        return LinearSVC(C=self.C, max_iter=self.max_iter, dual=False)

    def as_module(self) -> nn.Module:
        """An ``nn.Module`` whose logits are the one-vs-rest decision values."""
        if not hasattr(self, "estimator_"):
            raise ValueError("fit the model before calling as_module()")
        return LinearModule(self.estimator_.coef_, self.estimator_.intercept_, self.in_shape_).eval()


class SklearnDecisionTree(SklearnClassifier):
    """A CART decision tree (scikit-learn ``DecisionTreeClassifier``).

    Not differentiable: craft its adversarial examples with
    :class:`advlab.attacks.tree.DecisionTreeAttack`.

    Args:
        max_depth: depth limit (``None``: grow until the leaves are pure).
        min_samples_leaf: minimum training points per leaf.
        random_state: scikit-learn seed for the feature permutation (an int, not global state).
    """

    short_name = "DT"

    def __init__(self, max_depth: int | None = None, min_samples_leaf: int = 1,
                 random_state: int = 0) -> None:
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def _make_estimator(self) -> Any:
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
                                      random_state=self.random_state)


class KNNRelaxation(nn.Module):
    """A differentiable stand-in for k-nearest neighbours.

    The logit of class ``c`` is ``-mean(d_1^2 .. d_k^2) / temperature`` over the ``k``
    training points of class ``c`` nearest to ``x``. Its argmax is the class whose
    ``k`` nearest members are closest on average (a class-wise kNN rule that agrees
    with the majority vote on most inputs), and unlike the vote it has a useful
    gradient everywhere: moving ``x`` towards the nearest points of another class
    raises that class's logit.

    Args:
        points: training inputs ``(M, ...)`` in ``[0, 1]``.
        labels: their labels ``(M,)``.
        k: neighbours per class.
        temperature: logit scale (the argmax does not depend on it).
    """

    def __init__(self, points: torch.Tensor, labels: torch.Tensor, k: int = 5,
                 temperature: float = 1.0) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        num_classes = int(labels.max()) + 1
        counts = torch.bincount(labels, minlength=num_classes)
        if int(counts.min()) < k:
            raise ValueError(f"every class needs at least k={k} training points; counts {counts.tolist()}")
        self.k = int(k)
        self.temperature = float(temperature)
        self.num_classes = num_classes
        flat = points.detach().reshape(points.shape[0], -1).float()
        for c in range(num_classes):
            self.register_buffer(f"points_{c}", flat[labels == c].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.flatten(1)
        cols = []
        for c in range(self.num_classes):
            pts = getattr(self, f"points_{c}")
            d2 = (q.pow(2).sum(1, keepdim=True) - 2 * q @ pts.T + pts.pow(2).sum(1)[None]).clamp_min(0)
            near = d2.topk(self.k, dim=1, largest=False).values
            cols.append(-near.mean(1) / self.temperature)
        return torch.stack(cols, dim=1)


class SklearnKNN(SklearnClassifier):
    """k-nearest neighbours with a majority vote (scikit-learn ``KNeighborsClassifier``).

    Args:
        k: number of neighbours.
        relaxation_k: neighbours per class in the differentiable relaxation
            (:class:`KNNRelaxation`) returned by :meth:`as_module`.
        relaxation_points: training points kept for the relaxation (the first ones of
            the training set), bounding its cost; ``None`` keeps all.
    """

    short_name = "kNN"

    def __init__(self, k: int = 5, relaxation_k: int = 5, relaxation_points: int | None = 10000) -> None:
        self.k = k
        self.relaxation_k = relaxation_k
        self.relaxation_points = relaxation_points

    def _make_estimator(self) -> Any:
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=self.k)

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> SklearnKNN:
        super().fit(x, y)
        m = x.shape[0] if self.relaxation_points is None else min(self.relaxation_points, x.shape[0])
        self.points_ = x[:m].detach().float().cpu().clone()
        self.point_labels_ = y[:m].detach().long().cpu().clone()
        return self

    def as_module(self) -> nn.Module:
        """The differentiable relaxation :class:`KNNRelaxation` (used to craft kNN examples)."""
        if not hasattr(self, "estimator_"):
            raise ValueError("fit the model before calling as_module()")
        return KNNRelaxation(self.points_, self.point_labels_, k=self.relaxation_k).eval()


#: name -> wrapper class (for the CLI and the lecture)
SKLEARN_MODELS: dict[str, type[SklearnClassifier]] = {
    "lr": SklearnLogisticRegression,
    "svm": SklearnLinearSVM,
    "dt": SklearnDecisionTree,
    "knn": SklearnKNN,
}


def create_sklearn_model(name: str, **settings: Any) -> SklearnClassifier:
    """Build an unfitted wrapper: ``"lr" | "svm" | "dt" | "knn"``."""
    key = str(name).lower()
    if key not in SKLEARN_MODELS:
        raise ValueError(f"unknown scikit-learn model {name!r}; use one of {sorted(SKLEARN_MODELS)}")
    try:
        return SKLEARN_MODELS[key](**settings)
    except TypeError as e:
        raise ValueError(f"bad settings for {name!r}: {e}") from None

"""Detectors of adversarial examples, and the adaptive attack that bypasses them.

Two detectors, both trained on clean vs PGD examples:

* :class:`FeatureDetector`: a small binary head on a hidden layer of a frozen classifier
  (Metzen, Genewein, Fischer & Bischoff, "On Detecting Adversarial Perturbations", ICLR 2017).
* :class:`ExtraClassDetector`: the classifier retrained with an (N+1)-th "adversarial" class
  (Grosse, Manoharan, Papernot, Backes & McDaniel, "On the (Statistical) Detection of
  Adversarial Examples", 2017).

Both expose :meth:`score` (a logit, large means "adversarial") and :meth:`classify` (the
N class logits the attacker must fool). :func:`adaptive_pgd` attacks classifier and detector
together (Carlini & Wagner, "Adversarial Examples Are Not Easily Detected: Bypassing Ten
Detection Methods", AISec 2017): PGD on a combined loss, the classifier's margin plus the
detector's logit. It is a small function on the engine's pieces
(:func:`~advlab.attacks.engine.random_start`, :func:`~advlab.attacks.engine.steepest_step`),
not an :class:`~advlab.attacks.base.Attack`: its objective needs two models.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from advlab.attacks.engine import random_start, steepest_step
from advlab.threat import ThreatModel

__all__ = ["FeatureDetector", "ExtraClassDetector", "Detector", "train_feature_detector",
           "train_extra_class_detector", "fit_detector", "threshold_at_fpr", "detection_rate",
           "adaptive_pgd", "AdaptiveResult"]


def _check_batch(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise TypeError("x must be a float tensor (N, ...) of images; pass a batch")
    if y is not None and (y.shape[0] != x.shape[0] or y.dtype != torch.long):
        raise ValueError("y must be int64 labels with one entry per image")


class Detector(nn.Module):
    """Common interface: :meth:`score` (adversarial logit) and :meth:`classify` (class logits)."""

    def score(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def classify(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class FeatureDetector(Detector):
    """Metzen et al. (2017): a binary head on the features of one hidden layer of a frozen classifier.

    Args:
        classifier: the protected classifier (its weights are never trained here).
        layer: name of the module (``dict(classifier.named_modules())``) whose output is the feature.
        feature_shape: shape of that output for one image (infer it with :meth:`for_layer`).
        hidden: width of the head's hidden layer.
    """

    def __init__(self, classifier: nn.Module, layer: str, feature_shape: tuple[int, ...],
                 hidden: int = 64, seed: int = 0) -> None:
        super().__init__()
        modules = dict(classifier.named_modules())
        if layer not in modules:
            raise ValueError(f"no layer {layer!r} in the classifier; use one of {list(modules)[1:]}")
        self.classifier = classifier
        self.layer = layer
        d = 1
        for s in feature_shape:
            d *= int(s)
        with torch.random.fork_rng(devices=[]):  # the head's initial weights: from ``seed``,
            torch.manual_seed(seed)  # never from (or advancing) the caller's global RNG
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self._module = modules[layer]

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and the layer's output (a hook that lives for this one forward pass)."""
        seen: list[torch.Tensor] = []
        handle = self._module.register_forward_hook(lambda m, i, o: seen.append(o))
        try:
            logits = self.classifier(x)
        finally:
            handle.remove()
        return logits, seen[-1]

    @classmethod
    def for_layer(cls, classifier: nn.Module, layer: str, example: torch.Tensor,
                  hidden: int = 64, generator: torch.Generator | None = None) -> FeatureDetector:
        """A detector on ``layer``, its feature size taken from one forward pass of ``example``;
        the head's initial weights are seeded by one draw from ``generator`` (seed 0 without)."""
        modules = dict(classifier.named_modules())
        if layer not in modules:
            raise ValueError(f"no layer {layer!r} in the classifier; use one of {list(modules)[1:]}")
        seen: list[torch.Tensor] = []
        h = modules[layer].register_forward_hook(lambda m, i, o: seen.append(o))
        with torch.no_grad():
            classifier(example[:1])
        h.remove()
        seed = (int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))
                if generator is not None else 0)
        return cls(classifier, layer, tuple(seen[0].shape[1:]), hidden, seed)

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits and detector logit from one forward pass."""
        logits, feat = self.features(x)
        return logits, self.head(feat).squeeze(1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.both(x)[1]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())


class ExtraClassDetector(Detector):
    """Grosse et al. (2017): a classifier with an (N+1)-th "adversarial" output.

    :meth:`score` is the adversarial logit minus the best class logit (positive: the model's
    answer is "adversarial"); :meth:`classify` the first N logits.
    """

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes

    @classmethod
    def from_classifier(cls, classifier: nn.Module, num_classes: int,
                        generator: torch.Generator | None = None) -> ExtraClassDetector:
        """A copy of ``classifier`` whose last ``nn.Linear`` gets one more output (old rows kept)."""
        model = copy.deepcopy(classifier)
        parent, name, last = None, "", None
        for mod in model.modules():
            for n, child in mod.named_children():
                if isinstance(child, nn.Linear):
                    parent, name, last = mod, n, child
        if last is None or parent is None or last.out_features != num_classes:
            raise ValueError("the classifier needs a final nn.Linear with num_classes outputs")
        with torch.random.fork_rng(devices=[]):  # every weight is overwritten below; do not
            new = nn.Linear(last.in_features, num_classes + 1).to(last.weight.device)  # draw globally
        with torch.no_grad():
            new.weight[:num_classes] = last.weight
            new.bias[:num_classes] = last.bias
            w = torch.randn(last.in_features, generator=generator) * last.weight.std().cpu()
            new.weight[num_classes] = w.to(new.weight.device)
            new.bias[num_classes] = last.bias.min()
        setattr(parent, name, new)
        return cls(model, num_classes)

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.model(x)
        cls_logits = z[:, : self.num_classes]
        return cls_logits, z[:, self.num_classes] - cls_logits.max(1).values

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.both(x)[1]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.both(x)[0]


# ----------------------------------------------------------------------------- training


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=generator).split(batch_size))


def fit_detector(detector: Detector, clean: torch.Tensor, labels: torch.Tensor, adv: torch.Tensor,
                 *, epochs: int = 5, lr: float = 1e-3, batch_size: int = 128,
                 generator: torch.Generator | None = None) -> Detector:
    """Train ``detector`` (in place) on clean images (``labels``) vs adversarial images ``adv``.

    A :class:`FeatureDetector` trains only its head (binary cross-entropy, classifier frozen);
    an :class:`ExtraClassDetector` trains the whole model with cross-entropy, clean images
    with their labels and adversarial ones with class N.
    """
    _check_batch(clean, labels)
    if adv.dim() != clean.dim() or adv.shape[1:] != clean.shape[1:]:
        raise ValueError("adv must be images of the same shape as clean")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    x = torch.cat([clean, adv]).detach()
    is_adv = torch.cat([torch.zeros(len(clean)), torch.ones(len(adv))]).to(x.device)
    if isinstance(detector, FeatureDetector):
        params = detector.head_parameters()
        detector.classifier.eval()
        detector.head.train()
    elif isinstance(detector, ExtraClassDetector):
        params = list(detector.model.parameters())
        detector.model.train()
        y = torch.cat([labels, torch.full((len(adv),), detector.num_classes, dtype=torch.long,
                                          device=labels.device)])
    else:
        raise TypeError("detector must be a FeatureDetector or an ExtraClassDetector")
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(epochs):
        for idx in _batches(len(x), batch_size, gen):
            idx = idx.to(x.device)
            if isinstance(detector, FeatureDetector):
                with torch.no_grad():
                    feat = detector.features(x[idx])[1]
                out = detector.head(feat).squeeze(1)
                loss = nn.functional.binary_cross_entropy_with_logits(out, is_adv[idx])
            else:
                loss = nn.functional.cross_entropy(detector.model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return detector.eval()


def train_feature_detector(classifier: nn.Module, clean: torch.Tensor, labels: torch.Tensor,
                           adv: torch.Tensor, layer: str, *, hidden: int = 64, epochs: int = 5,
                           lr: float = 1e-3, generator: torch.Generator | None = None) -> FeatureDetector:
    """Metzen et al. (2017): a new head on ``layer`` of ``classifier``, trained on clean vs ``adv``."""
    det = FeatureDetector.for_layer(classifier.eval(), layer, clean, hidden, generator=generator)
    det = det.to(clean.device)
    fit_detector(det, clean, labels, adv, epochs=epochs, lr=lr, generator=generator)
    return det


def train_extra_class_detector(classifier: nn.Module, clean: torch.Tensor, labels: torch.Tensor,
                               adv: torch.Tensor, num_classes: int, *, epochs: int = 5,
                               lr: float = 1e-3, generator: torch.Generator | None = None
                               ) -> ExtraClassDetector:
    """Grosse et al. (2017): ``classifier`` copied with an extra class, retrained on clean + ``adv``."""
    det = ExtraClassDetector.from_classifier(classifier, num_classes, generator)
    fit_detector(det, clean, labels, adv, epochs=epochs, lr=lr, generator=generator)
    return det


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def _scores(detector: Detector, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    detector.eval()
    return torch.cat([detector.score(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def threshold_at_fpr(detector: Detector, clean: torch.Tensor, fpr: float = 0.05) -> float:
    """The score threshold that flags a share ``fpr`` of the clean images (the (1 - fpr) quantile)."""
    if not 0 <= fpr < 1:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    return float(torch.quantile(_scores(detector, clean).float(), 1 - fpr))


def detection_rate(detector: Detector, x: torch.Tensor, threshold: float) -> float:
    """Share of ``x`` whose score exceeds ``threshold`` (``nan`` for an empty batch)."""
    if len(x) == 0:
        return float("nan")
    return float((_scores(detector, x) > threshold).float().mean())


# ----------------------------------------------------------------------------- adaptive attack


@dataclass
class AdaptiveResult:
    """Outcome of :func:`adaptive_pgd`.

    Attributes:
        x_adv: the adversarial images.
        fooled: the classifier's answer is wrong at ``x_adv``.
        undetected: the detector's score is at most the threshold at ``x_adv``.
    """

    x_adv: torch.Tensor
    fooled: torch.Tensor
    undetected: torch.Tensor

    @property
    def success(self) -> torch.Tensor:
        """Fooled and undetected."""
        return self.fooled & self.undetected


def adaptive_pgd(detector: Detector, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *,
                 threshold: float = 0.0, steps: int = 40, step_size: float | None = None,
                 weight: float = 1.0, kappa: float = 2.0, generator: torch.Generator | None = None
                 ) -> AdaptiveResult:
    """PGD against classifier and detector at once (Carlini & Wagner 2017, section 4).

    Ascends ``min(max_{j != y} z_j - z_y, kappa) - weight * relu(s - threshold + kappa)`` with
    ``z`` the class logits and ``s`` the detector's score: misclassify with margin ``kappa``
    while pushing the score ``kappa`` below the detection threshold. Keeps per image the last
    iterate that is both misclassified and undetected, else the last iterate.

    Args:
        detector: a :class:`Detector` (its :meth:`~Detector.classify` is the attacked classifier).
        x, y: clean images and their labels.
        threat: the ball (its ``eps`` and ``bounds`` are respected).
        threshold: the detector's operating threshold (e.g. :func:`threshold_at_fpr`).
        steps: iterations; ``step_size`` defaults to ``2.5 * eps / steps``.
        weight: weight of the detector term.
        kappa: confidence margin of both terms.
        generator: for the random start.
    """
    _check_batch(x, y)
    if not isinstance(threat, ThreatModel):
        raise TypeError("threat must be a ThreatModel, e.g. ThreatModel('linf', 0.3)")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    alpha = step_size if step_size is not None else 2.5 * threat.eps / steps
    detector.eval()
    gen = generator if generator is not None else torch.Generator(device=x.device).manual_seed(0)
    xa = random_start(x, threat, gen)
    best = xa.clone()
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    def objective(z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        true = z.gather(1, y[:, None]).squeeze(1)
        other = z.masked_fill(nn.functional.one_hot(y, z.shape[1]).bool(), float("-inf")).max(1).values
        return torch.clamp(other - true, max=kappa) - weight * torch.relu(s - threshold + kappa)

    both: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = detector.both  # type: ignore[attr-defined]
    for _ in range(steps):
        xg = xa.detach().requires_grad_(True)
        with torch.enable_grad():
            z, s = both(xg)
            (grad,) = torch.autograd.grad(objective(z, s).sum(), xg)
        ok = (z.argmax(1) != y) & (s <= threshold)
        best[ok] = xa[ok]
        found |= ok.detach()
        xa = steepest_step(xa, x, grad, alpha, threat)
    with torch.no_grad():
        z, s = both(xa)
        ok = (z.argmax(1) != y) & (s <= threshold)
        best[ok] = xa[ok]
        found |= ok
        best[~found] = xa[~found]
        z, s = both(best)
    return AdaptiveResult(best.detach(), z.argmax(1) != y, s <= threshold)

"""Transferability: adversarial examples made for one model fool another.

* :func:`transfer_matrix`: sources x targets over model families (Papernot,
  McDaniel & Goodfellow 2016); a cell is the share of the source's adversarial
  examples, made on examples the source classifies correctly, that the target
  misclassifies.
* :func:`cross_training_set`: one architecture trained on two disjoint halves of
  the training set, transfer both ways (Szegedy et al. 2013; Papernot et al. 2016).
* :class:`~advlab.models.ensemble.EnsembleModel` and :func:`ensemble_transfer`: attack an ensemble at once
  and test on a held-out model (Liu, Chen, Liu & Song 2017).

Sources can be torch models (attacked with any :class:`~advlab.attacks.base.Attack`,
FGSM by default as in Papernot et al. 2016), linear scikit-learn models (the same
attack on their exact logits), k-nearest neighbours (the attack on the differentiable
relaxation :class:`~advlab.models.sklearn.KNNRelaxation`) or decision trees
(:class:`~advlab.attacks.tree.DecisionTreeAttack`). :func:`source_method` says which.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack
from advlab.attacks.pgd import FGSM
from advlab.attacks.tree import DecisionTreeAttack
from advlab.criteria import Misclassification
from advlab.models.ensemble import EnsembleModel
from advlab.models.sklearn import SklearnDecisionTree, as_classifier
from advlab.threat import ThreatModel

__all__ = [
    "EnsembleModel",
    "TransferMatrix",
    "CrossTrainingResult",
    "EnsembleTransferResult",
    "source_method",
    "craft",
    "transfer_matrix",
    "cross_training_set",
    "ensemble_transfer",
]

log = logging.getLogger(__name__)

Source = Any  # nn.Module | SklearnClassifier | Classifier with as_module()


def _mean(t: torch.Tensor) -> float:
    return float(t.float().mean()) if t.numel() else math.nan


def source_method(source: Source, attack: Attack | None = None) -> str:
    """How adversarial examples are crafted for ``source`` (for tables and JSON)."""
    name = type(attack or FGSM()).__name__
    if isinstance(source, SklearnDecisionTree):
        return "decision-tree attack (nearest leaf of another class)"
    if isinstance(source, nn.Module):
        return f"{name} on the model's logits"
    mod_fn = getattr(source, "as_module", None)
    if mod_fn is None:
        raise TypeError(f"cannot craft adversarial examples for {type(source).__name__}: it is neither "
                        "an nn.Module, a decision tree, nor has as_module()")
    if type(source).__name__ == "SklearnKNN":
        return f"{name} on the differentiable kNN relaxation"
    return f"{name} on the exact linear logits"


def craft(source: Source, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
          attack: Attack | None = None, generator: torch.Generator | None = None,
          batch_size: int | None = 500) -> torch.Tensor:
    """Adversarial examples for ``source`` (see :func:`source_method` for the method)."""
    if isinstance(source, SklearnDecisionTree):
        return DecisionTreeAttack()(source, x, y, threat=threat).x_adv
    module = source if isinstance(source, nn.Module) else source.as_module()
    if module is None:
        raise TypeError(f"{type(source).__name__} has no differentiable stand-in")
    atk = attack or FGSM()
    return atk(module, x, Misclassification(y), threat=threat, generator=generator,
               batch_size=batch_size).x_adv


def _labels(model: Source, x: torch.Tensor) -> torch.Tensor:
    return as_classifier(model).predict(x)


@dataclass
class TransferMatrix:
    """Result of :func:`transfer_matrix`.

    Attributes:
        sources, targets: names in row / column order.
        rates: ``rates[i][j]`` = share of source ``i``'s adversarial examples (made on the
            examples it classifies correctly) that target ``j`` misclassifies.
        rates_target_correct: the same, counting only examples target ``j`` also
            classifies correctly when clean (removes the target's own clean errors).
        n_source_correct: examples each source classifies correctly (the row's base).
        clean_acc: clean accuracy of each target.
        methods: how each source's examples were crafted.
        threat: the threat model.
    """

    sources: list[str]
    targets: list[str]
    rates: list[list[float]]
    rates_target_correct: list[list[float]]
    n_source_correct: list[int]
    clean_acc: dict[str, float]
    methods: dict[str, str]
    threat: dict[str, Any]
    n_examples: int
    seconds: float = 0.0
    adversarials: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def rate(self, source: str, target: str) -> float:
        return self.rates[self.sources.index(source)][self.targets.index(target)]

    def to_dict(self) -> dict[str, Any]:
        return {"sources": self.sources, "targets": self.targets, "rates": self.rates,
                "rates_target_correct": self.rates_target_correct,
                "n_source_correct": self.n_source_correct, "clean_acc": self.clean_acc,
                "methods": self.methods, "threat": self.threat, "n_examples": self.n_examples,
                "seconds": self.seconds}


def transfer_matrix(
    sources: Mapping[str, Source],
    targets: Mapping[str, Source],
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    attack: Attack | None = None,
    generator: torch.Generator | None = None,
    batch_size: int | None = 500,
    keep_adversarials: bool = False,
) -> TransferMatrix:
    """Cross-technique transferability matrix (Papernot, McDaniel & Goodfellow 2016).

    Args:
        sources: name -> model to craft adversarial examples on.
        targets: name -> model to test them on (torch modules or classifiers).
        x, y: clean test inputs in ``[0, 1]`` and labels.
        threat: the perturbation budget, e.g. ``ThreatModel("linf", 0.3)``.
        attack: gradient attack for differentiable sources (default FGSM).
        generator: for randomised attacks.
        batch_size: attack batch size.
        keep_adversarials: keep each source's adversarial examples in the result.

    Returns:
        :class:`TransferMatrix`.

    References:
        Papernot, McDaniel & Goodfellow, "Transferability in Machine Learning: from
        Phenomena to Black-Box Attacks using Adversarial Samples", arXiv:1605.07277, 2016.
    """
    import time

    if not sources or not targets:
        raise ValueError("give at least one source and one target model")
    t0 = time.perf_counter()
    clean_pred = {name: _labels(m, x) for name, m in targets.items()}
    clean_ok = {name: p == y for name, p in clean_pred.items()}
    rates, strict, n_ok, methods, advs = [], [], [], {}, {}
    for s_name, src in sources.items():
        ok = _labels(src, x) == y
        idx = ok.nonzero().squeeze(1)
        methods[s_name] = source_method(src, attack)
        n_ok.append(int(idx.numel()))
        log.info("crafting %d adversarial examples on %s (%s)", idx.numel(), s_name, methods[s_name])
        x_adv = craft(src, x[idx], y[idx], threat, attack, generator, batch_size) if idx.numel() \
            else x[:0]
        if keep_adversarials:
            advs[s_name] = x_adv
        row, row_strict = [], []
        for t_name, tgt in targets.items():
            wrong = _labels(tgt, x_adv) != y[idx] if idx.numel() else torch.zeros(0, dtype=torch.bool)
            row.append(_mean(wrong))
            row_strict.append(_mean(wrong[clean_ok[t_name][idx]]) if idx.numel() else math.nan)
        rates.append(row)
        strict.append(row_strict)
    return TransferMatrix(
        sources=list(sources), targets=list(targets), rates=rates, rates_target_correct=strict,
        n_source_correct=n_ok, clean_acc={k: _mean(v) for k, v in clean_ok.items()},
        methods=methods, threat=threat.to_dict(), n_examples=int(x.shape[0]),
        seconds=time.perf_counter() - t0, adversarials=advs)


@dataclass
class CrossTrainingResult:
    """Transfer between two models of one architecture trained on disjoint data.

    Attributes:
        a_to_b, b_to_a: transfer rates (examples made on one, tested on the other).
        a_self, b_self: white-box success on the source itself (same definition).
        clean_acc_a, clean_acc_b: clean accuracies.
    """

    a_to_b: float
    b_to_a: float
    a_self: float
    b_self: float
    clean_acc_a: float
    clean_acc_b: float
    threat: dict[str, Any]
    n_examples: int

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def cross_training_set(model_a: Source, model_b: Source, x: torch.Tensor, y: torch.Tensor,
                       threat: ThreatModel, attack: Attack | None = None,
                       generator: torch.Generator | None = None,
                       batch_size: int | None = 500) -> CrossTrainingResult:
    """Cross-training-set transferability: the same architecture, disjoint training halves.

    References:
        Szegedy et al., "Intriguing properties of neural networks", ICLR 2014
        (arXiv:1312.6199), Section 4.3. Papernot, McDaniel & Goodfellow 2016 (intra-technique
        transferability).
    """
    m = transfer_matrix({"a": model_a, "b": model_b}, {"a": model_a, "b": model_b}, x, y, threat,
                        attack, generator, batch_size)
    return CrossTrainingResult(a_to_b=m.rate("a", "b"), b_to_a=m.rate("b", "a"),
                               a_self=m.rate("a", "a"), b_self=m.rate("b", "b"),
                               clean_acc_a=m.clean_acc["a"], clean_acc_b=m.clean_acc["b"],
                               threat=threat.to_dict(), n_examples=int(x.shape[0]))


@dataclass
class EnsembleTransferResult:
    """Ensemble attack vs single-source transfer to one held-out model.

    Attributes:
        ensemble_rate: share of the ensemble's adversarial examples (on examples the
            ensemble classifies correctly) that the held-out model misclassifies.
        single_rates: the same for each member attacked alone, same attack and eps.
        ensemble_rate_target_correct, single_rates_target_correct: counting only examples
            the held-out model classifies correctly when clean.
    """

    held_out: str
    members: list[str]
    ensemble_rate: float
    single_rates: dict[str, float]
    ensemble_rate_target_correct: float
    single_rates_target_correct: dict[str, float]
    threat: dict[str, Any]
    attack: dict[str, Any]
    n_examples: int

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def ensemble_transfer(members: Mapping[str, nn.Module], held_out: Source, x: torch.Tensor,
                      y: torch.Tensor, threat: ThreatModel, attack: Attack | None = None,
                      generator: torch.Generator | None = None, held_out_name: str = "held-out",
                      combine: str = "prob", batch_size: int | None = 500) -> EnsembleTransferResult:
    """The ensemble attack of Liu et al. (2017): attack all members at once, test on a held-out model.

    Args:
        members: name -> torch model of the ensemble.
        held_out: the model that is never seen by the attack.
        attack: the attack run on the ensemble and on each member alone (default FGSM;
            Liu et al. optimise iteratively, e.g. ``PGD``).
        combine: how the ensemble fuses its members (:class:`EnsembleModel`).

    References:
        Liu, Chen, Liu & Song, "Delving into Transferable Adversarial Examples and
        Black-box Attacks", ICLR 2017 (arXiv:1611.02770).
    """
    if not members:
        raise ValueError("give at least one ensemble member")
    if "ensemble" in members or held_out_name in members:
        raise ValueError(f"member names must differ from 'ensemble' and from held_out_name={held_out_name!r}")
    ens = EnsembleModel(list(members.values()), combine=combine).eval()
    sources: dict[str, Any] = {"ensemble": ens, **members}
    m = transfer_matrix(sources, {held_out_name: held_out}, x, y, threat, attack, generator, batch_size)
    return EnsembleTransferResult(
        held_out=held_out_name, members=list(members),
        ensemble_rate=m.rate("ensemble", held_out_name),
        single_rates={k: m.rate(k, held_out_name) for k in members},
        ensemble_rate_target_correct=m.rates_target_correct[0][0],
        single_rates_target_correct={k: m.rates_target_correct[i + 1][0] for i, k in enumerate(members)},
        threat=threat.to_dict(), attack=(attack or FGSM()).settings(), n_examples=int(x.shape[0]))

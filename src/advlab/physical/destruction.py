"""Destruction rate (Kurakin et al. 2016) and the destruction-rate experiment.

The destruction rate of a transformation ``T`` is the share of adversarial
images that are no longer adversarial once transformed, counted only over
images that were classified correctly when clean and misclassified after the
attack:

``d = sum_k C(x_k, y_k) * (1 - C(x_adv_k, y_k)) * C(T(x_adv_k), y_k)
      / sum_k C(x_k, y_k) * (1 - C(x_adv_k, y_k))``

where ``C(x, y)`` is 1 when ``x`` is classified as ``y``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack
from advlab.threat import ThreatModel
from advlab.transforms import Transform
from advlab.validation import check_inputs, eval_mode

__all__ = ["DestructionRate", "destruction_rate", "destruction_rate_from_predictions",
           "DestructionRow", "DestructionReport", "destruction_experiment"]

log = logging.getLogger(__name__)


@dataclass
class DestructionRate:
    """Destruction rate of one transformation on one set of adversarial examples.

    Attributes:
        rate: destroyed / eligible (``nan`` when nothing is eligible).
        eligible: clean correct and adversarial misclassified.
        destroyed: eligible and the transformed adversarial image is correct again.
        n: number of images.
        clean_correct: images classified correctly when clean.
        adv_correct: adversarial images classified correctly.
        transformed_adv_correct: transformed adversarial images classified correctly.
    """

    rate: float
    eligible: int
    destroyed: int
    n: int
    clean_correct: int
    adv_correct: int
    transformed_adv_correct: int
    destroyed_mask: torch.Tensor = field(repr=False, default_factory=lambda: torch.zeros(0, dtype=torch.bool))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("destroyed_mask")
        d["rate"] = None if math.isnan(self.rate) else self.rate
        return d


def _as_bool(name: str, t: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of booleans, got {type(t).__name__}")
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per image), got shape {tuple(t.shape)}")
    return t.bool()


def destruction_rate_from_predictions(clean_correct: torch.Tensor, adv_correct: torch.Tensor,
                                      transformed_adv_correct: torch.Tensor) -> DestructionRate:
    """Destruction rate from per-image correctness (Kurakin et al. 2016, eq. 1).

    Args:
        clean_correct: ``C(x_k, y_k)`` per image.
        adv_correct: ``C(x_adv_k, y_k)``.
        transformed_adv_correct: ``C(T(x_adv_k), y_k)``.

    Returns:
        the :class:`DestructionRate`.

    References:
        Kurakin, Goodfellow & Bengio, "Adversarial examples in the physical
        world", arXiv:1607.02533, 2016, section 4.
    """
    c = _as_bool("clean_correct", clean_correct)
    a = _as_bool("adv_correct", adv_correct)
    t = _as_bool("transformed_adv_correct", transformed_adv_correct)
    if not c.shape == a.shape == t.shape:
        raise ValueError("clean_correct, adv_correct and transformed_adv_correct must have the "
                         f"same length, got {len(c)}, {len(a)}, {len(t)}")
    eligible = c & ~a
    destroyed = eligible & t
    ne, nd = int(eligible.sum()), int(destroyed.sum())
    return DestructionRate(rate=nd / ne if ne else math.nan, eligible=ne, destroyed=nd, n=len(c),
                           clean_correct=int(c.sum()), adv_correct=int(a.sum()),
                           transformed_adv_correct=int(t.sum()), destroyed_mask=destroyed)


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    outs = []
    with torch.no_grad(), eval_mode(model, "evaluation"):
        for i in range(0, x.shape[0], batch_size):
            outs.append(model(x[i:i + batch_size]).argmax(1))
    return torch.cat(outs) if outs else torch.zeros(0, dtype=torch.long, device=x.device)


def destruction_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                     transform: Transform, *, generator: torch.Generator | None = None,
                     batch_size: int = 500) -> DestructionRate:
    """Destruction rate of ``transform`` on adversarial images ``x_adv`` of ``x``.

    Args:
        model: classifier returning logits on ``[0, 1]`` images.
        x: clean images ``(N, C, H, W)`` in ``[0, 1]``.
        y: true labels ``(N,)``.
        x_adv: adversarial versions of ``x``.
        transform: the transformation ``T`` (drawn with ``generator``).
        generator: random parameters of ``T``.
        batch_size: images per forward pass.

    Returns:
        the :class:`DestructionRate` (Kurakin et al. 2016, eq. 1).
    """
    check_inputs(model, x)
    check_inputs(model, x_adv)
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv has shape {tuple(x_adv.shape)} but x has {tuple(x.shape)}")
    if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
        raise ValueError(f"y must be a tensor of {x.shape[0]} labels")
    if not isinstance(transform, Transform):
        raise TypeError(f"transform must be an advlab.physical Transform, got {type(transform).__name__}")
    with torch.no_grad():
        tx = transform(x_adv, generator)
    return destruction_rate_from_predictions(_predict(model, x, batch_size) == y,
                                             _predict(model, x_adv, batch_size) == y,
                                             _predict(model, tx, batch_size) == y)


@dataclass
class DestructionRow:
    """One cell of the destruction-rate table."""

    attack: str
    eps: float
    transform: str
    rate: float | None
    eligible: int
    destroyed: int
    adv_success_rate: float
    transformed_adv_accuracy: float
    clean_transformed_accuracy: float


@dataclass
class DestructionReport:
    """The destruction-rate experiment: rows per (attack, eps, transform).

    Attributes:
        rows: the table.
        clean_accuracy: accuracy on the untransformed clean images.
        n: number of images.
        seconds: wall-clock time of attacks and transforms per attack name.
        examples: per (attack, eps): ``x``, ``x_adv``, transformed ``x_adv`` of
            the first few images (for figures).
    """

    rows: list[DestructionRow]
    clean_accuracy: float
    n: int
    seconds: dict[str, float]
    examples: dict[tuple[str, float], dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def rate(self, attack: str, eps: float, transform: str) -> float | None:
        for r in self.rows:
            if r.attack == attack and r.transform == transform and math.isclose(r.eps, eps):
                return r.rate
        raise KeyError((attack, eps, transform))

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "clean_accuracy": self.clean_accuracy, "seconds": self.seconds,
                "rows": [asdict(r) for r in self.rows]}


def _transformed_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: Transform,
                          seed: int, batch_size: int) -> float:
    with torch.no_grad():
        tx = t(x, torch.Generator().manual_seed(seed))
    return float((_predict(model, tx, batch_size) == y).float().mean())


def _transform_rows(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor,
                    clean_correct: torch.Tensor, adv_correct: torch.Tensor,
                    transforms: Mapping[str, Transform], seeds: dict[str, int],
                    clean_tf_acc: dict[str, float], attack: str, eps: float,
                    batch_size: int) -> tuple[list[DestructionRow], torch.Tensor]:
    """One row per transform of the adversarial images ``x_adv``; also the last transform's images."""
    rows: list[DestructionRow] = []
    tx = x_adv
    for tname, t in transforms.items():
        with torch.no_grad():
            tx = t(x_adv, torch.Generator().manual_seed(seeds[tname]))
        t_correct = _predict(model, tx, batch_size) == y
        d = destruction_rate_from_predictions(clean_correct, adv_correct, t_correct)
        rows.append(DestructionRow(
            attack=attack, eps=eps, transform=tname,
            rate=None if math.isnan(d.rate) else d.rate, eligible=d.eligible,
            destroyed=d.destroyed, adv_success_rate=float((~adv_correct).float().mean()),
            transformed_adv_accuracy=float(t_correct.float().mean()),
            clean_transformed_accuracy=clean_tf_acc[tname]))
    return rows, tx


def destruction_experiment(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Mapping[str, Attack],
    eps: Sequence[float],
    transforms: Mapping[str, Transform],
    *,
    norm: str = "linf",
    generator: torch.Generator | None = None,
    batch_size: int = 250,
    keep_examples: int = 0,
    progress: Callable[[str], None] | None = None,
) -> DestructionReport:
    """Destruction rate of every transform for every attack and eps (Kurakin et al. 2016, table).

    Every attack is run once per eps on all images; each transform is then
    applied to the adversarial images with parameters drawn from
    ``generator`` (the same draws for every attack when the generator is
    reseeded between transforms, which this function does by deriving one
    seed per transform from ``generator``).

    Args:
        model: classifier on ``[0, 1]`` images.
        x, y: clean images and labels.
        attacks: name -> attack (e.g. FGSM, BIM, ILLC, EOT).
        eps: budgets.
        transforms: name -> transform.
        norm: threat-model norm.
        generator: randomness of attacks and transforms.
        batch_size: images per attack batch.
        keep_examples: keep this many images per (attack, eps) for figures.
        progress: optional status callback.

    Returns:
        the :class:`DestructionReport`.

    References:
        Kurakin, Goodfellow & Bengio, "Adversarial examples in the physical
        world", arXiv:1607.02533, 2016.
    """
    check_inputs(model, x)
    if not transforms:
        raise ValueError("give at least one transform")
    if not attacks:
        raise ValueError("give at least one attack")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    seeds = {name: int(torch.randint(0, 2**62, (1,), generator=g)) for name in transforms}
    clean_correct = _predict(model, x, batch_size) == y
    clean_tf_acc = {tname: _transformed_accuracy(model, x, y, t, seeds[tname], batch_size)
                    for tname, t in transforms.items()}
    rows: list[DestructionRow] = []
    seconds: dict[str, float] = {}
    examples: dict[tuple[str, float], dict[str, torch.Tensor]] = {}
    for aname, attack in attacks.items():
        for e in eps:
            if progress:
                progress(f"{aname} eps={e:g}")
            t0 = time.perf_counter()
            r = attack(model, x, y, threat=ThreatModel(norm, e), generator=g, batch_size=batch_size)
            seconds[aname] = seconds.get(aname, 0.0) + time.perf_counter() - t0
            adv_correct = r.logits.argmax(1) == y
            new_rows, tx = _transform_rows(model, r.x_adv, y, clean_correct, adv_correct,
                                           transforms, seeds, clean_tf_acc, aname, float(e),
                                           batch_size)
            rows += new_rows
            if keep_examples:
                k = keep_examples
                examples[(aname, float(e))] = {"x": x[:k].clone(), "x_adv": r.x_adv[:k].clone(),
                                               "x_t": tx[:k].clone()}
            log.info("%s eps=%g: adversarial success %.3f", aname, e,
                     float((~adv_correct).float().mean()))
    return DestructionReport(rows=rows, clean_accuracy=float(clean_correct.float().mean()),
                             n=int(x.shape[0]), seconds=seconds, examples=examples)

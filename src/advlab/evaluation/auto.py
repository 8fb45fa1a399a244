"""``--attacks auto``: a cascade that decides where to spend its passes as it goes.

AutoAttack (Croce & Hein 2020) runs every attack on every point that is still robust;
on a robust model most of those points are far from any boundary, and the later stages
(APGD-T over 9 targets, FAB-T over 9, Square with 5,000 queries) spend almost all of the
passes on them and break nothing. Adaptive Auto Attack (Liu et al., CVPR 2022) discards
points that look robust from online statistics, and AutoAE (Liu, Peng & Tang, AAAI 2023)
spends iterations where they pay. ``auto`` applies the same idea with one statistic, the
logit margin (true class minus the best other) at the best point the earlier stages
found inside the threat model:

1. **APGD-CE on every point.** The model checks run here.
2. **Targeted APGD on the 3 classes the logits rank highest, in margin bands:** the
   robust points sorted by margin, smallest first, in bands of ``band_fraction`` of them
   (5%, at least ``min_band`` = 10 points). The next band is attacked only if this one broke a
   point; after two bands in a row that broke at least a quarter of their points, the next
   band holds all the rest.
3. **Targeted FAB on the top 3 classes, in margin bands the same way** (margins now the
   smaller of both earlier stages'). FAB walks to the nearest boundary of a linearised
   model, which APGD's loss ascent can miss: at L2 eps 2 on the suite's PGD-AT CNN
   (100 images) APGD-CE and APGD-T3 left 16% robust where AutoAttack, with FAB-T, left 1%.
4. **Square with 2,000 queries in margin bands, the same way** (margins now the smallest
   of the white-box stages'). Square needs no gradient, so what it breaks after the
   white box is a sign of masked gradients: each band that breaks a point extends it to
   the next band, and the result says so (warning ``auto_escalated``). Where it broke
   points, Square runs **once more from a new random start on the points still robust of
   the bands where it broke one** (stage ``square2k-again``). The evidence (PGD-AT CNN of
   ``bench/robust_suite.py``, first 1,000 test images, the 300 lowest-margin points left
   robust by APGD-CE, APGD-T3 and FAB-T3): one Square run broke 14-17 of them with 2,000
   queries and 15-16 with 5,000 (two seeds each), every break came within 1,730 queries
   and at margin rank 68 or below, and the union of two 2,000-query runs (17) equalled the
   union of all six runs. Random restarts pay more than queries past 2,000.
5. **If the model checks saw masked gradients** (zero gradients, gradients that disagree
   with finite differences, randomness, probabilities as outputs), the gradient stages
   are not trusted: Square with 5,000 queries runs on *every* remaining robust point.

On the MNIST suite of ``bench/robust_suite.py`` (1,000 images, PGD-AT model), the points
targeted APGD broke after APGD-CE all lay in the lowest 10% of APGD-CE margins (18 of 19 in
the lowest 3%), and 14 of the 15 points Square broke after both white-box stages lay in the
lowest 5% of margins (the last at 13%): that is what the bands exploit.

Each phase is an ordinary :func:`~advlab.evaluation.cascade.cascade` on the points that
reach it, so ``auto`` keeps what ``standard`` promises: resumable (the phases save to
``STATE``, ``STATE.t3-<k>``, ``STATE.fab-<k>``, ``STATE.square-<k>``, ``STATE.square-again``
and ``STATE.escalate``), sharded under
``torch.distributed``, masking checks, and the threat model re-verified in every phase.

References:
    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020. Liu et al., "Practical Evaluation of Adversarial
    Robustness via Adaptive Auto Attack", CVPR 2022. Liu, Peng & Tang, "AutoAE: ensembling
    attacks by improvement per iteration", AAAI 2023. Andriushchenko et al., "Square Attack",
    ECCV 2020.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab.attacks import Attack
from advlab.evaluation.cascade import CascadeResult, _dist, cascade, make_stages
from advlab.evaluation.checks import CheckWarning, check_black_box
from advlab.threat import ThreatModel

__all__ = ["auto_cascade", "run_cascade", "FIRST", "TARGETED", "MIN_NORM", "BLACK_BOX", "AGAIN",
           "ESCALATE", "MASKING_CODES"]

FIRST = "apgd-ce"
TARGETED = "apgd-t3"
MIN_NORM = "fab-t3"
BLACK_BOX = "square2k"
#: the second Square pass over the bands where Square broke points (a new random start)
AGAIN = "square2k-again"
#: the black box when the model checks flag masked gradients: AutoAttack's Square, on every point
ESCALATE = "square"
#: two bands in a row that break at least this share of their points send all the rest in
#: one band (many small bands of Square cost its 2,000 sequential iterations each)
RUSH = 0.25
#: model-check codes that mean the gradients cannot be trusted: escalate at once
MASKING_CODES = ("zero_gradients", "gradient_mismatch", "randomized", "probabilities",
                 "log_probabilities")


def _phase_path(state_path: str | Path | None, suffix: str) -> Path | None:
    return None if state_path is None else Path(f"{state_path}.{suffix}")


def _sub_run(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, points: torch.Tensor,
             stage: str, threat: ThreatModel, seed: int, batch_size: int, state: Path | None,
             keep: bool, on_chunk: Callable[[str, int, int], None] | None,
             overwrite: bool) -> CascadeResult:
    dev = x.device
    # the second Square pass is Square2k under another name (its own stage log and seed)
    spec: list[Any] = [stage] if stage != AGAIN else [(AGAIN, make_stages([BLACK_BOX])[0][1])]
    return cascade(model, x[points.to(dev)], labels[points.to(labels.device)], spec, threat,
                   seed=seed, batch_size=batch_size, state_path=state, checks=False,
                   keep_adversarials=keep, on_chunk=on_chunk, overwrite=overwrite)


def _merge(base: CascadeResult, parts: list[tuple[torch.Tensor, CascadeResult]],
           warnings_: list[CheckWarning], plan: list[str]) -> CascadeResult:
    """One result: ``base`` (all points) plus phases run on subsets ``points``.

    The bands of one stage are summed into one stage log, in the order the stages ran.
    """
    n = base.n_examples
    robust, broken_by = base.robust_correct.clone(), base.broken_by.clone()
    margin = base.margin.clone() if base.margin is not None else None
    x_adv = None if base.x_adv is None else base.x_adv.clone()
    stages = list(base.stages)
    index: dict[str, int] = {}
    for points, res in parts:
        for lg in res.stages:
            if lg.name not in index:
                index[lg.name] = len(stages)
                stages.append(replace(lg, attacked=0, broken=0, seconds=0.0, passes=0,
                                      forwards=0))
            i = index[lg.name]
            stages[i] = replace(stages[i], attacked=stages[i].attacked + lg.attacked,
                                broken=stages[i].broken + lg.broken,
                                seconds=stages[i].seconds + lg.seconds,
                                passes=stages[i].passes + lg.passes,
                                forwards=stages[i].forwards + lg.forwards)
        hit = res.broken_by >= 0
        robust[points[hit]] = False
        broken_by[points[hit]] = index[res.stages[0].name]
        if margin is not None and res.margin is not None:
            margin[points] = torch.minimum(margin[points], res.margin)
        if x_adv is not None and res.x_adv is not None:
            x_adv[points[hit]] = res.x_adv[hit]
    left = int(base.clean_correct.sum())
    for i in range(len(stages)):
        left -= stages[i].broken
        stages[i] = replace(stages[i], robust_acc=left / max(1, n))
    every = [base, *(r for _, r in parts)]
    return replace(
        base, robust_acc=int(robust.sum()) / n if n else math.nan, stages=stages,
        warnings=base.warnings + [w for _, r in parts for w in r.warnings] + warnings_,
        seconds=sum(r.seconds for r in every), passes=sum(s.passes for s in stages),
        forwards=sum(s.forwards for s in stages), resumed=any(r.resumed for r in every),
        robust_correct=robust, broken_by=broken_by, margin=margin, x_adv=x_adv, plan=plan)


def _check_bands(band_fraction: Any, min_band: Any) -> None:
    if isinstance(band_fraction, bool) or not isinstance(band_fraction, int | float) \
            or not 0 < band_fraction <= 1:
        raise ValueError(f"band_fraction must be in (0, 1], got {band_fraction!r}")
    if isinstance(min_band, bool) or not isinstance(min_band, int) or min_band < 1:
        raise ValueError(f"min_band must be an integer >= 1, got {min_band!r}")


def _bands(order: torch.Tensor, size: int, run: Callable[[torch.Tensor, int], int]
           ) -> tuple[int, int, int]:
    """``run(points, band)`` on bands of ``order`` while they break points.

    Returns (bands run, points attacked, points broken).
    """
    bands = attacked = broken = start = rushing = 0
    while start < int(order.numel()):
        points = order[start:start + size].sort().values
        got = run(points, bands)
        bands, attacked, broken = bands + 1, attacked + int(points.numel()), broken + got
        start += int(points.numel())
        if not got:
            break
        # two bands in a row breaking a large share: the rest at once (one band breaking
        # many is expected, the bands are ranked by margin)
        rushing = rushing + 1 if got >= RUSH * points.numel() else 0
        if rushing >= 2:
            size = int(order.numel())
    return bands, attacked, broken


def _black_box(robust: torch.Tensor, banded: Callable[[str, str, int], tuple[int, int, int]],
               run: Callable[[torch.Tensor, str, str, int], int],
               parts: list[tuple[torch.Tensor, CascadeResult]], seed: int, plan: list[str],
               warnings_: list[CheckWarning]) -> None:
    """Square (2,000 queries) in margin bands; where it broke points, once more on those bands."""
    n_left = int(robust.sum())
    first = len(parts)
    bands, attacked, broken = banded(BLACK_BOX, "square", seed + 1001)
    plan.append(f"{BLACK_BOX} (2,000 queries) on {attacked} of the {n_left} robust points "
                f"in {bands} margin band(s), broke {broken}")
    if not broken:
        return
    # the bands where Square broke a point (the last band broke none: that ended the bands)
    pts = torch.cat([points for points, res in parts[first:] if bool((res.broken_by >= 0).any())])
    pts = pts.sort().values
    pts = pts[robust[pts]]
    more = 0
    if pts.numel():
        more = run(pts, AGAIN, "square-again", seed + 2001)
        plan.append(f"{AGAIN}: {BLACK_BOX} again, from a new random start, on the {pts.numel()} "
                    f"points still robust of the bands where it broke points, broke {more}")
    msg = (f"auto escalated: {BLACK_BOX}, which uses no gradients, broke {broken + more} "
           f"points the white-box stages left robust, so it went on band by band to "
           f"{attacked} points while a band broke one"
           + (f", then once more on the {pts.numel()} of them still robust" if pts.numel() else ""))
    warnings_.append(CheckWarning("auto_escalated", msg, {"reason": "black box beat white box",
                                                          "points": attacked}))
    plan.append(msg)


def auto_cascade(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *,
                 seed: int = 0, batch_size: int = 500, state_path: str | Path | None = None,
                 checks: bool = True, keep_adversarials: bool = False,
                 on_chunk: Callable[[str, int, int], None] | None = None, overwrite: bool = False,
                 band_fraction: float = 0.05, min_band: int = 10) -> CascadeResult:
    """The adaptive cascade described in this module; same arguments as ``cascade``.

    Args:
        band_fraction: a band holds this share of the points still robust when the stage
            starts, ranked by margin (``0 < band_fraction <= 1``; 1: the whole stage at once).
        min_band: a band holds at least this many points (all, if fewer are robust).

    Returns:
        A :class:`CascadeResult` whose stages are the phases that ran (the bands of a stage
        summed), with ``plan`` saying in words what ran where and why.
    """
    _check_bands(band_fraction, min_band)
    keep_adversarials = keep_adversarials and _dist()[1] == 1  # shards hold only their own points
    base = cascade(model, x, labels, [FIRST], threat, seed=seed, batch_size=batch_size,
                   state_path=state_path, checks=checks, keep_adversarials=keep_adversarials,
                   on_chunk=on_chunk, overwrite=overwrite)
    plan = [f"{FIRST} on all {base.n_examples} points"]
    robust = base.robust_correct.clone()
    margin = (base.margin.clone() if base.margin is not None
              else torch.zeros(base.n_examples))
    parts: list[tuple[torch.Tensor, CascadeResult]] = []
    warnings_: list[CheckWarning] = []

    def run(points: torch.Tensor, stage: str, tag: str, sub_seed: int) -> int:
        res = _sub_run(model, x, labels, points, stage, threat, sub_seed, batch_size,
                       _phase_path(state_path, tag), keep_adversarials, on_chunk, overwrite)
        parts.append((points, res))
        hit = res.broken_by >= 0
        robust[points[hit]] = False
        if res.margin is not None:
            margin[points] = torch.minimum(margin[points], res.margin)
        return int(hit.sum())

    def banded(stage: str, tag: str, seed0: int) -> tuple[int, int, int]:
        todo = robust.nonzero().squeeze(1)
        order = todo[torch.argsort(margin[todo], stable=True)]
        size = max(min_band, math.ceil(band_fraction * int(order.numel())))
        return _bands(order, size, lambda pts, b: run(pts, stage, f"{tag}-{b}", seed0 + b))

    masked = sorted({w.code for w in base.warnings if w.code in MASKING_CODES})
    if not bool(robust.any()):
        return replace(base, plan=plan + ["no point left robust"])
    if masked:
        rest = robust.nonzero().squeeze(1)
        run(rest, ESCALATE, "escalate", seed + 2)
        msg = (f"auto escalated: the model checks flagged {', '.join(masked)}, so the "
               f"gradients are not trusted; {ESCALATE} (5,000 queries) ran on all "
               f"{rest.numel()} points left robust by {FIRST}")
        warnings_.append(CheckWarning("auto_escalated", msg,
                                      {"reason": ", ".join(masked), "points": int(rest.numel())}))
        plan.append(msg)
        return _merge(base, parts, warnings_, plan)
    for stage, tag, sub_seed in ((TARGETED, "t3", seed + 1), (MIN_NORM, "fab", seed + 501)):
        if not bool(robust.any()):
            break
        n_left = int(robust.sum())
        bands, attacked, broken = banded(stage, tag, sub_seed)
        plan.append(f"{stage} on {attacked} of the {n_left} robust points in {bands} margin "
                    f"band(s) (smallest margins first), broke {broken}")
    if bool(robust.any()):
        _black_box(robust, banded, run, parts, seed, plan, warnings_)
    out = _merge(base, parts, warnings_, plan)
    if checks:
        out.warnings.extend(check_black_box([s.name for s in out.stages],
                                            [s.name.startswith("square") for s in out.stages],
                                            [s.broken for s in out.stages]))
    return out


def run_cascade(model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
                stages: str | Sequence[str] | Sequence[tuple[str, Attack]], threat: ThreatModel,
                **options: Any) -> CascadeResult:
    """:func:`~advlab.evaluation.cascade.cascade`, or :func:`auto_cascade` for ``"auto"``."""
    if isinstance(stages, str) and stages.strip().lower() == "auto":
        return auto_cascade(model, x, labels, threat, **options)
    return cascade(model, x, labels, stages, threat, **options)

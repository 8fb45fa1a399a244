"""The evaluator benchmarks' own bookkeeping (bench/robust_suite.py, bench/min_norm.py).

The benchmarks themselves are long CPU runs; these tests pin the parts that decide what
their tables say: the masking model masks, a target is met only when both its accuracy and
its time conditions hold, and a returned input counts only if it is a verified adversarial.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
robust_suite = pytest.importorskip("robust_suite")
min_norm = pytest.importorskip("min_norm")


def test_quantiser_masks_gradients_and_the_cascade_says_so() -> None:
    from advlab.evaluation.checks import check_model

    torch.manual_seed(0)
    model = robust_suite.Quantise(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), levels=16).eval()
    x = torch.rand(8, 1, 4, 4, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().max()) == 0.0
    with torch.no_grad():
        y = model(x).argmax(1)
    codes = {w.code for w in check_model(model, x.detach(), y)}
    assert "zero_gradients" in codes


def _out(ref: float, ref_cpu: float, **rows: tuple[float, float]) -> dict:
    res = {"pyautoattack": {"robust_acc": ref, "cpu_seconds": ref_cpu}}
    res.update({m: {"robust_acc": a, "cpu_seconds": c, "passes": 1, "warnings": []}
                for m, (a, c) in rows.items()})
    return {"results": {"m": res}}


def test_summary_targets_need_both_accuracy_and_time() -> None:
    rows = {r["method"]: r for r in robust_suite.summary(
        _out(0.500, 100.0, auto=(0.501, 10.0), autoattack=(0.498, 100.0), standard=(0.5, 30.0)))}
    assert rows["auto"]["target_met"] is True  # +0.1 points, exactly 1/10 of the time
    assert rows["autoattack"]["target_met"] is True  # -0.2 points, same time
    assert "target_met" not in rows["standard"]  # no target for standard in this suite
    assert rows["auto"]["gap_points"] == pytest.approx(0.1)
    assert rows["auto"]["cpu_ratio"] == pytest.approx(0.1)
    slow = {r["method"]: r for r in robust_suite.summary(
        _out(0.5, 100.0, auto=(0.5, 10.5), autoattack=(0.497, 90.0)))}
    assert slow["auto"]["target_met"] is False  # fast enough only at <= 1/10
    assert slow["autoattack"]["target_met"] is False  # 0.3 points below: not "within 0.2"
    weak = {r["method"]: r for r in robust_suite.summary(_out(0.5, 100.0, auto=(0.503, 1.0)))}
    assert weak["auto"]["target_met"] is False


def test_min_norm_counts_only_verified_adversarials() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # class = larger coord
    x = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.6, 0.4]]).reshape(3, 1, 1, 2)
    y = torch.zeros(3, dtype=torch.long)
    x_adv = torch.tensor([[0.4, 0.6], [0.6, 0.4], [1.2, 1.5]]).reshape(3, 1, 1, 2)
    d = min_norm.distances(model, x_adv, x, y, bs=2)
    assert d[0] == pytest.approx(math.sqrt(0.08))  # crosses the boundary: counted
    assert math.isinf(d[1])  # not misclassified
    assert math.isinf(d[2])  # misclassified but outside the [0, 1] box
    s = min_norm.stats(d, best=torch.tensor([0.2, 0.1, 0.1], dtype=torch.float64))
    assert s["success_rate"] == pytest.approx(1 / 3)
    assert math.isinf(s["median_l2"])  # fewer than half broken: no finite median
    assert s["mean_excess"] == pytest.approx(math.sqrt(0.08) / 0.2 - 1)

"""Tests for advlab.evaluation: known answers on linear models, curves, validation."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from advlab.attacks import FGSM, PGD
from advlab.data import ImageDataset
from advlab.evaluation import accuracy_vs_eps, evaluate, predict
from advlab.models import create_model
from advlab.threat import ThreatModel

N = 200
D = (1, 4, 4)
EPS_GRID = [0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15]

pytestmark = pytest.mark.usefixtures("no_network")


class Binary:
    """A two-class linear model with known weights, and inputs kept away from the box edges.

    Logits are ``(0, z)`` with ``z = w.x + b``. For inputs in ``[0.3, 0.7]`` and
    ``eps <= 0.3`` no clipping happens, so the worst case in the Linf ball changes the
    signed margin ``m = (2y - 1) z`` by exactly ``-eps * ||w||_1`` and FGSM attains it:
    ``x_adv = x - eps * (2y - 1) * sign(w)``.
    """

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.model = create_model("softmax", in_shape=D, num_classes=2).eval()
        w = torch.randn(D, generator=g)
        with torch.no_grad():
            self.model.linear.weight.zero_()
            self.model.linear.weight[1] = w.flatten()
            self.model.linear.bias.copy_(torch.tensor([0.0, -0.5 * float(w.sum())]))
        self.w = w
        self.l1 = float(w.abs().sum())
        self.x = 0.3 + 0.4 * torch.rand(N, *D, generator=g)
        self.y = torch.randint(0, 2, (N,), generator=g)
        self.z = (self.x * w).sum(dim=(1, 2, 3)) - 0.5 * float(w.sum())
        self.margin = (2 * self.y - 1) * self.z

    def robust(self, eps: float) -> torch.Tensor:
        return self.margin > eps * self.l1

    def check_no_ties(self, eps: float) -> None:
        assert float((self.margin - eps * self.l1).abs().min()) > 1e-3


@pytest.fixture(scope="module")
def binary() -> Binary:
    return Binary()


# --------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("eps", [0.01, 0.03, 0.08])
def test_fgsm_on_linear_model_matches_hand_computation(binary: Binary, eps: float) -> None:
    b = binary
    b.check_no_ties(0.0)
    b.check_no_ties(eps)
    r = evaluate(b.model, b.x, b.y, FGSM(), ThreatModel("linf", eps), keep_adversarials=True,
                 seed=11)
    clean = b.margin > 0
    robust = b.robust(eps)
    assert 0.2 < float(clean.float().mean()) < 0.8  # a mix of right and wrong answers
    assert 0 < int(robust.sum()) < int(clean.sum())  # the attack breaks some, not all
    assert r.clean_acc == pytest.approx(float(clean.float().mean()))
    assert r.robust_acc == pytest.approx(float(robust.float().mean()))
    assert r.adv_error_rate == pytest.approx(1 - float(robust.float().mean()))
    assert r.attack_success_rate == pytest.approx(float((~robust[clean]).float().mean()))
    assert torch.equal(r.clean_correct, clean)
    assert torch.equal(r.robust_correct, robust)
    expected_x = b.x - eps * (2 * b.y - 1).float().reshape(-1, 1, 1, 1) * b.w.sign()
    torch.testing.assert_close(r.x_adv, expected_x)
    z_adv = b.z - (2 * b.y - 1) * eps * b.l1
    mistakes = ~robust
    assert r.mean_confidence_adv_mistakes == pytest.approx(
        float(torch.sigmoid(z_adv[mistakes].abs()).mean()), rel=1e-4)
    assert r.mean_confidence_clean == pytest.approx(float(torch.sigmoid(b.z.abs()).mean()),
                                                    rel=1e-4)
    assert r.passes == N
    assert r.n_examples == N
    d = r.to_dict()
    assert d["threat_model"] == "linf" and d["eps"] == eps and d["seed"] == 11
    assert d["attack"]["attack"] == "FGSM"
    assert d["robust_acc"] == r.robust_acc and d["clean_acc"] == r.clean_acc


def test_curves_on_linear_model_match_hand_computation(binary: Binary) -> None:
    b = binary
    for e in EPS_GRID:
        b.check_no_ties(e)
    expected = [float(b.robust(e).float().mean()) for e in EPS_GRID]
    fgsm = accuracy_vs_eps(b.model, b.x, b.y, FGSM(), EPS_GRID)
    pgd = accuracy_vs_eps(b.model, b.x, b.y, PGD(steps=10), EPS_GRID,
                          generator=torch.Generator().manual_seed(0))
    assert fgsm.accuracy == pytest.approx(expected, abs=1e-6)
    assert pgd.accuracy == pytest.approx(expected, abs=1e-6)
    # more budget never helps the model
    assert all(a >= c for a, c in zip(pgd.accuracy, pgd.accuracy[1:], strict=False))
    assert pgd.accuracy[0] > pgd.accuracy[-1]
    assert fgsm.eps == EPS_GRID and fgsm.norm == "linf"
    assert fgsm.passes == N  # one gradient for every budget
    assert pgd.passes == 10 * N * (len(EPS_GRID) - 1)  # eps = 0 costs no gradient


def test_fgsm_fast_curve_equals_separate_fgsm_runs(
    trained_softmax: nn.Module, digits_test: ImageDataset
) -> None:
    x, y = digits_test.tensors()
    eps = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3]
    curve = accuracy_vs_eps(trained_softmax, x, y, FGSM(), eps, batch_size=128)
    separate = []
    for e in eps:
        r = evaluate(trained_softmax, x, y, FGSM(), ThreatModel("linf", e), batch_size=128)
        separate.append(r.robust_acc if e > 0 else r.clean_acc)
    counts = [round(a * len(y)) for a in curve.accuracy]
    assert counts == [round(a * len(y)) for a in separate]
    assert curve.accuracy[0] > 0.9 and curve.accuracy[-1] < 0.1
    assert curve.passes == len(y)
    assert curve.attack == "FGSM"


class Wavy(nn.Module):
    """Logits ``(sin(4 pi x), 0)`` on one input in [0, 1]: not monotone in x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.sin(4 * math.pi * x[:, 0]), torch.zeros_like(x[:, 0])], dim=1)


def test_fgsm_curve_never_counts_a_clean_mistake_as_robust() -> None:
    # At x = 0.3 the label-0 point is misclassified (sin(1.2 pi) < 0); the FGSM step of
    # 0.25 lands at 0.55 where sin(2.2 pi) > 0: correct after the attack.
    model = Wavy().eval()
    x, y = torch.tensor([[0.3]]), torch.tensor([0])
    r = evaluate(model, x, y, FGSM(), ThreatModel("linf", 0.25))
    assert r.clean_acc == 0.0 and r.robust_acc == 0.0
    curve = accuracy_vs_eps(model, x, y, FGSM(), [0.0, 0.25])
    assert curve.accuracy == [0.0, 0.0]


def test_pgd_curve_is_monotone_and_bounded_by_clean_accuracy(
    trained_softmax: nn.Module, digits_test: ImageDataset
) -> None:
    x, y = digits_test.subset(limit=120).tensors()
    eps = [0.0, 0.02, 0.05, 0.1]
    curve = accuracy_vs_eps(trained_softmax, x, y, PGD(steps=10, early_stop=True), eps,
                            generator=torch.Generator().manual_seed(0))
    clean = float((predict(trained_softmax, x).argmax(1) == y).float().mean())
    assert curve.accuracy[0] == pytest.approx(clean)
    assert all(a >= c for a, c in zip(curve.accuracy, curve.accuracy[1:], strict=False))
    assert curve.accuracy[-1] < curve.accuracy[0]


def test_robust_points_are_a_subset_of_clean_points(
    trained_softmax: nn.Module, digits_test: ImageDataset
) -> None:
    x, y = digits_test.subset(limit=120).tensors()
    threat = ThreatModel("linf", 0.05)
    r = evaluate(trained_softmax, x, y, PGD(steps=10), threat,
                 generator=torch.Generator().manual_seed(0), keep_adversarials=True)
    assert r.robust_correct is not None and r.x_adv is not None
    assert not bool((r.robust_correct & ~r.clean_correct).any())
    assert r.robust_acc is not None and r.robust_acc <= r.clean_acc
    assert 0 < r.robust_acc < r.clean_acc
    assert bool(threat.contains(r.x_adv, x).all())
    pred_adv = predict(trained_softmax, r.x_adv).argmax(1)
    assert torch.equal(r.robust_correct, r.clean_correct & (pred_adv == y))
    assert r.passes <= 10 * len(y)


def test_clean_only_evaluation(trained_softmax: nn.Module, digits_test: ImageDataset) -> None:
    x, y = digits_test.tensors()
    r = evaluate(trained_softmax, x, y)
    expected = float((predict(trained_softmax, x).argmax(1) == y).float().mean())
    assert r.clean_acc == pytest.approx(expected)
    assert r.robust_acc is None and r.attack is None and r.passes == 0
    d = r.to_dict(per_sample=True)
    assert d["threat_model"] is None and d["eps"] is None
    assert d["clean_correct"] == r.clean_correct.int().tolist()


# --------------------------------------------------------------------------- validation


def _probabilities(model: nn.Module) -> nn.Module:
    return nn.Sequential(model, nn.Softmax(dim=1)).eval()


def test_probability_outputs_are_refused(binary: Binary) -> None:
    prob = _probabilities(binary.model)
    with pytest.raises(ValueError, match="probabilities"):
        evaluate(prob, binary.x, binary.y)
    with pytest.raises(ValueError, match="probabilities"):
        evaluate(prob, binary.x, binary.y, FGSM(), ThreatModel("linf", 0.1))
    with pytest.raises(ValueError, match="probabilities"):
        accuracy_vs_eps(prob, binary.x, binary.y, PGD(steps=2), [0.1])


def test_probability_outputs_are_refused_by_the_fgsm_curve(binary: Binary) -> None:
    with pytest.raises(ValueError, match="probabilities"):
        accuracy_vs_eps(_probabilities(binary.model), binary.x, binary.y, FGSM(), [0.1])


def test_train_mode_warns_evaluates_in_eval_mode_and_is_restored(
    digits_test: ImageDataset,
) -> None:
    torch.manual_seed(0)
    model = create_model("maxout", in_shape=(1, 8, 8), hidden=[16], pieces=2, dropout=0.9)
    x, _ = digits_test.subset(limit=64).tensors()
    y = predict(model.eval(), x).argmax(1)  # labels = eval-mode predictions: clean acc 1
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        r = evaluate(model, x, y)
    assert r.clean_acc == 1.0  # dropout (p = 0.9) was off
    assert model.training
    with pytest.warns(UserWarning, match="train mode"):
        curve = accuracy_vs_eps(model, x, y, FGSM(), [0.0])
    assert curve.accuracy == [1.0]
    assert model.training
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(model, x, y, FGSM(), ThreatModel("linf", 0.1))
    assert not model.training


def test_bad_inputs(binary: Binary) -> None:
    b = binary
    with pytest.raises(ValueError, match="threat model"):
        evaluate(b.model, b.x, b.y, FGSM())
    with pytest.raises(TypeError, match="floating-point"):
        evaluate(b.model, (b.x * 255).to(torch.uint8), b.y)
    with pytest.raises(ValueError, match="outside the bounds"):
        evaluate(b.model, b.x * 2, b.y)
    with pytest.raises(ValueError, match="labels"):
        evaluate(b.model, b.x, b.y[:-1])
    with pytest.raises(ValueError, match="eps"):
        accuracy_vs_eps(b.model, b.x, b.y, FGSM(), [0.1, -0.1])


# --------------------------------------------------------------------------- minimum-norm attacks


def test_minimum_norm_attack_counts_only_inside_the_ball_and_gives_the_curve_in_one_run(
        binary: Binary) -> None:
    """DeepFool on a linear binary model finds the exact minimal Linf perturbation
    ``margin / ||w||_1`` (times 1 + overshoot): broken at eps iff that is <= eps."""
    from advlab.attacks import DeepFool

    b = binary
    atk = DeepFool(steps=5, overshoot=1e-4)
    eps_grid = [0.0, 0.01, 0.03, 0.08, 0.15]
    curve = accuracy_vs_eps(b.model, b.x, b.y, atk, eps_grid, "linf")
    assert curve.passes > 0
    one_run = curve.passes
    for e, acc in zip(eps_grid, curve.accuracy, strict=True):
        expected = float(b.robust(e).float().mean())
        assert abs(acc - expected) <= 1 / N + 1e-9, (e, acc, expected)
        # evaluate() agrees: an unbounded attack's adversarial counts only inside the ball
        r = evaluate(b.model, b.x, b.y, atk, ThreatModel("linf", e))
        assert abs(r.robust_acc - expected) <= 1 / N + 1e-9
    # the whole curve cost one run, not one per eps
    r = evaluate(b.model, b.x, b.y, atk, ThreatModel("linf", 0.15))
    assert one_run == r.passes


@pytest.mark.parametrize("bs", [0, -3, 2.5, True])
def test_bad_batch_size_is_a_clear_error(binary: Binary, bs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="batch size must be a positive integer"):
        predict(binary.model, binary.x, bs)
    with pytest.raises(ValueError, match="batch size must be a positive integer"):
        evaluate(binary.model, binary.x, binary.y, FGSM(), ThreatModel("linf", 0.1), batch_size=bs)

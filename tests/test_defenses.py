"""Tests for advlab.defenses.adversarial_training: FGSM (Goodfellow), FGSM-RS, PGD-AT, TRADES."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.attacks import FGSM
from advlab.data import ImageDataset
from advlab.defenses import (
    TRADES,
    CleanObjective,
    FastFGSMTraining,
    FGSMTraining,
    PGDTraining,
    TrainConfig,
    fit,
    perturb_fgsm,
    perturb_pgd,
    perturb_trades,
)
from advlab.defenses.adversarial_training import _kl
from advlab.evaluation import evaluate
from advlab.models import create_model
from advlab.models.zoo import training_loss
from advlab.threat import ThreatModel

CFG = TrainConfig(epochs=2, batch_size=64, lr=1e-2, seed=1)


@pytest.fixture(scope="module")
def small(digits_train: ImageDataset) -> ImageDataset:
    return digits_train.subset(limit=256)


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", in_shape=(1, 8, 8), num_classes=10, hidden=[16])


def _equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def _logistic() -> nn.Module:
    torch.manual_seed(0)
    m = create_model("logistic", in_shape=(1, 2, 3), num_classes=2)
    with torch.no_grad():
        m.linear.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, -0.25, 3.0, -1.0]]))
        m.linear.bias.zero_()
    return m.eval()


# ---------------------------------------------------------------- objectives that reduce to clean


def test_goodfellow_alpha_one_is_clean_training(small: ImageDataset) -> None:
    a, b = _mlp(), _mlp()
    ra = fit(a, small.images, small.labels, CFG, objective=CleanObjective())
    rb = fit(b, small.images, small.labels, CFG, objective=FGSMTraining(eps=0.3, alpha=1.0))
    assert _equal(a, b)
    assert ra.passes == rb.passes == 2 * 256
    c = _mlp()
    rc = fit(c, small.images, small.labels, CFG, objective=FGSMTraining(eps=0.3, alpha=0.5))
    assert not _equal(a, c)
    assert rc.passes == 3 * 2 * 256  # attack + clean + adversarial training passes


def test_trades_beta_zero_is_clean_training(small: ImageDataset) -> None:
    a, b = _mlp(), _mlp()
    fit(a, small.images, small.labels, CFG)
    rb = fit(b, small.images, small.labels, CFG, objective=TRADES(eps=0.3, beta=0.0))
    assert _equal(a, b)
    assert rb.passes == 2 * 256
    c = _mlp()
    rc = fit(c, small.images, small.labels, CFG, objective=TRADES(eps=0.3, beta=1.0, steps=3))
    assert not _equal(a, c)
    assert rc.passes == (3 + 2) * 2 * 256


def test_eps_zero_goodfellow_equals_clean_loss_value() -> None:
    m = _mlp()
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8)
    loss, logits, passes = FGSMTraining(eps=0.0, alpha=0.3)(m.train(), x, y)
    assert torch.allclose(loss, training_loss(m, m(x), y), atol=1e-6)
    assert passes == 3


# ---------------------------------------------------------------- inner maximisation


def test_fgsm_perturbation_on_linear_model_is_sign_of_weight() -> None:
    m = _logistic()
    x = torch.full((2, 1, 2, 3), 0.5)
    y = torch.tensor([1, 0])
    xa = perturb_fgsm(m, x, y, ThreatModel("linf", 0.1))
    w = m.linear.weight.reshape(1, 2, 3)
    # label 1: the loss grows as w.x falls, so FGSM steps along -sign(w); label 0 along +sign(w)
    assert torch.allclose(xa[0] - x[0], -0.1 * torch.sign(w))
    assert torch.allclose(xa[1] - x[1], 0.1 * torch.sign(w))


def test_pgd_on_linear_model_reaches_the_fgsm_vertex() -> None:
    m = _logistic()
    x = torch.full((2, 1, 2, 3), 0.5)
    y = torch.tensor([1, 0])
    threat = ThreatModel("linf", 0.1)
    xa = perturb_pgd(m, x, y, threat, steps=10, step_size=0.03, random_init=True,
                     generator=torch.Generator().manual_seed(0))
    assert torch.allclose(xa, perturb_fgsm(m, x, y, threat), atol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("kind", ["fgsm", "fgsm-rs", "pgd", "trades"])
def test_perturbations_stay_in_ball_are_seeded_and_side_effect_free(norm: str, kind: str) -> None:
    m = _mlp().train()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    x0 = x.clone()
    y = torch.arange(6)
    threat = ThreatModel(norm, 0.3 if norm == "linf" else 1.0)

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        if kind == "fgsm":
            return perturb_fgsm(m, x, y, threat)
        if kind == "fgsm-rs":
            return perturb_fgsm(m, x, y, threat, step_size=1.25 * threat.eps, random_init=True,
                                generator=g)
        if kind == "pgd":
            return perturb_pgd(m, x, y, threat, steps=3, step_size=threat.eps / 2, generator=g)
        return perturb_trades(m, x, threat, steps=3, step_size=threat.eps / 2, generator=g)

    a, b = run(0), run(0)
    assert torch.equal(a, b)
    assert threat.contains(a, x).all()
    assert torch.equal(x, x0)
    assert all(p.grad is None for p in m.parameters())
    assert m.training
    if kind in ("fgsm-rs", "pgd", "trades"):
        assert not torch.equal(run(0), run(1))


def test_trades_perturbation_increases_kl() -> None:
    m = _mlp().eval()
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    threat = ThreatModel("linf", 0.2)
    xa = perturb_trades(m, x, threat, steps=5, step_size=0.05,
                        generator=torch.Generator().manual_seed(0))
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    noise = torch.clamp(x + 0.2 * (2 * u - 1), 0, 1)
    with torch.no_grad():
        kl_adv = _kl(m(x), m(xa))
        kl_noise = _kl(m(x), m(noise))
    assert kl_adv > 5 * kl_noise


def test_objective_gradient_is_the_gradient_at_the_adversarial_point() -> None:
    """PGD-AT's parameter gradient equals that of the plain loss at the same (seeded) x_adv."""
    m = _mlp().train()
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    y = torch.arange(8)
    obj = PGDTraining(eps=0.2, steps=3)
    loss, logits, passes = obj(m, x, y, torch.Generator().manual_seed(7))
    assert passes == 4
    g1 = torch.autograd.grad(loss, list(m.parameters()))
    m.eval()
    xa = perturb_pgd(m, x, y, ThreatModel("linf", 0.2), steps=3, step_size=2.5 * 0.2 / 3,
                     generator=torch.Generator().manual_seed(7))
    m.train()
    g2 = torch.autograd.grad(training_loss(m, m(xa), y), list(m.parameters()))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g1, g2, strict=True))
    assert all(p.grad is None for p in m.parameters())  # the attack never fills .grad


def test_fast_fgsm_default_step_is_1_25_eps() -> None:
    m = _mlp().train()
    x = torch.full((4, 1, 8, 8), 0.5)
    y = torch.arange(4)
    obj = FastFGSMTraining(eps=0.1)
    _, logits, passes = obj(m, x, y, torch.Generator().manual_seed(0))
    assert passes == 2
    m.eval()
    xa = perturb_fgsm(m, x, y, ThreatModel("linf", 0.1), step_size=0.125, random_init=True,
                      generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(logits, m(xa), atol=1e-6)


def test_fast_fgsm_takes_the_gradient_at_the_unclipped_start() -> None:
    """Wong et al.'s start: x + U(-eps, eps) is not clipped to [0, 1] before the gradient.

    On an all-black image, clipping would zero half the noise; the unclipped and the
    clipped starts must give different training points, both inside the threat model.
    """
    m = _mlp().eval()
    x = torch.zeros(8, 1, 8, 8)
    y = torch.arange(8)
    threat = ThreatModel("linf", 0.3)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    raw = perturb_fgsm(m, x, y, threat, step_size=0.375, random_init=True, generator=g(),
                       clip_start=False)
    clipped = perturb_fgsm(m, x, y, threat, step_size=0.375, random_init=True, generator=g(),
                           clip_start=True)
    assert not torch.equal(raw, clipped)
    assert threat.contains(raw, x).all() and threat.contains(clipped, x).all()
    m.train()
    _, logits, _ = FastFGSMTraining(eps=0.3)(m, x, y, g())
    m.eval()
    with torch.no_grad():
        assert torch.allclose(logits, m(raw), atol=1e-6)


def test_n_fgsm_leaves_the_ball_but_not_the_bounds() -> None:
    """N-FGSM (de Jorge et al. 2022): noise 2 eps, step eps, no projection: ||d|| <= 3 eps."""
    m = _mlp().eval()
    x = torch.full((64, 1, 8, 8), 0.5)
    y = torch.arange(64) % 10
    eps = 0.1
    xa = perturb_fgsm(m, x, y, ThreatModel("linf", eps), step_size=eps, random_init=True,
                      generator=torch.Generator().manual_seed(0), init_scale=2.0, project=False)
    d = (xa - x).abs().flatten(1).amax(1)
    assert (d > eps + 1e-3).any() and (d <= 3 * eps + 1e-6).all()
    assert xa.min() >= 0 and xa.max() <= 1


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("make", [
    lambda: FGSMTraining(eps=-0.1),
    lambda: FGSMTraining(alpha=1.5),
    lambda: FGSMTraining(alpha=-0.1),
    lambda: FGSMTraining(norm="l7"),
    lambda: FastFGSMTraining(step_size=-1.0),
    lambda: FastFGSMTraining(init_scale=-1.0),
    lambda: PGDTraining(steps=0),
    lambda: PGDTraining(eps=float("nan")),
    lambda: TRADES(beta=-1.0),
    lambda: TRADES(steps=0),
])
def test_bad_settings_fail_before_training(small: ImageDataset, make) -> None:  # type: ignore[no-untyped-def]
    m = _mlp()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(ValueError):
        fit(m, small.images, small.labels, CFG, objective=make())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_settings_are_reported() -> None:
    s = TRADES(eps=0.3, beta=6.0).settings()
    assert s["defense"] == "trades" and s["beta"] == 6.0 and s["eps"] == 0.3


# ---------------------------------------------------------------- real behaviour


def test_fgsm_training_makes_softmax_more_robust_on_digits(
    digits_train: ImageDataset, digits_test: ImageDataset, digits_settings: dict[str, object]
) -> None:
    """Goodfellow et al.'s finding in miniature: FGSM error falls, clean error barely moves."""
    cfg = TrainConfig(epochs=4, batch_size=64, lr=1e-2, seed=0)
    x, y = digits_test.tensors()
    threat = ThreatModel("linf", 0.2)
    res = {}
    for name, obj in (("clean", None), ("adv", FGSMTraining(eps=0.2, alpha=0.5))):
        torch.manual_seed(0)
        m = create_model("softmax", **digits_settings)
        fit(m, digits_train.images, digits_train.labels, cfg, objective=obj)
        res[name] = evaluate(m, x, y, FGSM(), threat)
    # measured: FGSM error 94% -> 64%, clean accuracy 94.7% -> 93.1%
    assert res["clean"].adv_error_rate > 0.8  # a softmax model is easy prey at eps 0.2
    assert res["adv"].adv_error_rate < res["clean"].adv_error_rate - 0.2
    assert res["adv"].clean_acc > res["clean"].clean_acc - 0.05

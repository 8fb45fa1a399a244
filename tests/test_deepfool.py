"""DeepFool: exact on affine classifiers; the attack contract for an unbounded attack."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from advlab.attacks import DeepFool
from advlab.criteria import TargetedMisclassification
from advlab.threat import ThreatModel

OVERSHOOT = 0.02


def affine(d: int, classes: int, seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(classes, d, generator=g) * 0.3
    b = torch.randn(classes, generator=g) * 0.1
    lin = nn.Linear(d, classes)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    return nn.Sequential(nn.Flatten(), lin).eval(), w, b


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("classes", [2, 5])
def test_exact_minimal_perturbation_on_affine_models(norm, classes):  # type: ignore[no-untyped-def]
    d = 16
    model, w, b = affine(d, classes, classes)
    x = torch.rand(10, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.4
    z = x.flatten(1) @ w.T + b
    y = z.argmax(1)
    # exact distance to the closest boundary f_k = f_y of an affine classifier
    wd = w[None, :, :] - w[y][:, None, :]  # (n, K, d)
    fd = (z - z.gather(1, y[:, None])).abs()
    dual = wd.abs().sum(2) if norm == "linf" else wd.norm(dim=2)
    dist = (fd + 1e-4) / dual
    dist[torch.arange(10), y] = float("inf")
    expected = (1 + OVERSHOOT) * dist.min(1).values
    r = DeepFool(overshoot=OVERSHOOT)(model, x, y, threat=ThreatModel(norm, 1.0, (-10.0, 10.0)))
    assert bool(r.success.all())
    assert torch.allclose(r.distance, expected, rtol=1e-4, atol=1e-6)
    assert bool((r.passes == classes - 1).all())  # one step: one gradient per candidate class
    # and nothing is smaller than the exact minimal distance
    assert bool((r.distance >= dist.min(1).values * (1 - 1e-5)).all())


def test_targeted_on_affine_model_reaches_target():
    model, _, _ = affine(16, 4, 1)
    x = torch.full((4, 1, 4, 4), 0.5)
    t = torch.arange(4)
    r = DeepFool()(model, x, TargetedMisclassification(t), threat=ThreatModel("l2", 1.0, (-5.0, 5.0)))
    assert bool(r.success.all())
    assert torch.equal(r.logits.argmax(1), t)


def tiny(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3)).eval()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_contract_on_a_nonlinear_model(norm):  # type: ignore[no-untyped-def]
    model = tiny(2)
    x = torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(3))
    threat = ThreatModel(norm, 0.0)
    a = DeepFool()(model, x, y, threat=threat)
    b = DeepFool()(model, x, y, threat=threat)
    assert torch.equal(a.x_adv, b.x_adv)
    assert bool(((a.x_adv >= 0) & (a.x_adv <= 1)).all())
    with torch.no_grad():
        pred = model(a.x_adv).argmax(1)
    assert torch.equal(a.success, pred != y)
    assert torch.allclose(a.distance, threat.strategy.distance(a.x_adv, x))
    assert a.x_adv.data_ptr() != x.data_ptr()
    # already misclassified inputs are returned unchanged at no gradient cost
    wrong = ~(model(x).argmax(1) == y)
    assert torch.equal(a.x_adv[wrong], x[wrong]) and bool((a.passes[wrong] == 0).all())
    assert bool((a.passes + a.forwards >= 1).all())


def test_no_side_effects_and_bad_settings():
    model = tiny(4)
    x = torch.rand(5, 1, 4, 4)
    y = torch.randint(0, 3, (5,))
    x_copy, params, rng = x.clone(), copy.deepcopy(model.state_dict()), torch.get_rng_state()
    DeepFool()(model, x, y, threat=ThreatModel("l2", 1.0))
    assert torch.equal(x, x_copy) and torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        DeepFool(steps=2)(model, x, y, threat=ThreatModel("l2", 1.0))
    assert model.training
    model.eval()
    for bad in (DeepFool(steps=0), DeepFool(overshoot=-0.1), DeepFool(candidates=0)):
        with pytest.raises(ValueError):
            bad(model, x, y, threat=ThreatModel("l2", 1.0))
    with pytest.raises(ValueError, match="l2 and linf"):
        DeepFool()(model, x, y, threat=ThreatModel("l1", 1.0))

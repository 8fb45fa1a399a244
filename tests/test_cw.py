"""Carlini-Wagner L2: known answers on linear models and the attack contract (unbounded)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from advlab.attacks import CarliniWagnerL2
from advlab.criteria import Misclassification, TargetedMisclassification
from advlab.threat import ThreatModel


def binary_linear(d: int, seed: int) -> tuple[nn.Module, torch.Tensor, float]:
    """Two logits (0, w.x + b): class 1 iff w.x + b > 0."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g) * 0.5
    b = 0.3
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.zeros(d), w]))
        lin.bias.copy_(torch.tensor([0.0, b]))
    return nn.Sequential(nn.Flatten(), lin).eval(), w, b


def test_minimal_l2_on_linear_binary_classifier_is_hyperplane_distance():
    d = 16
    model, w, b = binary_linear(d, 0)
    g = torch.Generator().manual_seed(1)
    x = 0.35 + 0.3 * torch.rand(8, 1, 4, 4, generator=g)  # far from the box edges
    with torch.no_grad():
        y = model(x).argmax(1)
    dist = ((x.flatten(1) @ w + b).abs() / w.norm())
    assert bool((dist < 0.3).all())  # the projection stays inside [0, 1]
    r = CarliniWagnerL2(steps=300, binary_search_steps=12, step_size=0.01)(
        model, x, y, threat=ThreatModel("l2", 1.0))
    assert bool(r.success.all())
    l2 = r.info["l2"]
    ratio = l2 / dist
    assert bool((ratio >= 1 - 1e-3).all()), ratio  # nothing can be closer than the hyperplane
    assert bool((ratio <= 1.02).all()), ratio  # issue 3: within 2%
    # the perturbation points along -+w (the normal of the hyperplane)
    cos = nn.functional.cosine_similarity((r.x_adv - x).flatten(1), w.expand(8, d), dim=1)
    assert bool((cos.abs() > 0.99).all())


def test_targeted_reaches_each_class_with_a_small_perturbation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    x = torch.full((4, 1, 4, 4), 0.5)
    targets = torch.arange(4)
    r = CarliniWagnerL2(steps=100, binary_search_steps=6)(
        model, x, TargetedMisclassification(targets), threat=ThreatModel("l2", 1.0))
    assert bool(r.success.all())
    assert torch.equal(r.logits.argmax(1), targets)
    with torch.no_grad():
        assert torch.equal(model(r.x_adv).argmax(1), targets)


def test_kappa_gives_a_confident_margin():
    model, w, b = binary_linear(16, 2)
    x = torch.full((3, 1, 4, 4), 0.5)
    with torch.no_grad():
        y = model(x).argmax(1)
    r = CarliniWagnerL2(steps=200, binary_search_steps=8, kappa=0.5)(
        model, x, y, threat=ThreatModel("l2", 1.0))
    assert bool(r.success.all())
    z = r.logits
    margin = (z.gather(1, (1 - y)[:, None]) - z.gather(1, y[:, None])).squeeze(1)
    assert bool((margin >= 0.5 - 1e-4).all())


def tiny(seed: int, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, classes)).eval()


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)])
def test_contract_bounds_success_and_determinism(bounds):  # type: ignore[no-untyped-def]
    lo, hi = bounds
    g = torch.Generator().manual_seed(3)
    x = lo + (hi - lo) * torch.rand(6, 1, 4, 4, generator=g)
    y = torch.randint(0, 3, (6,), generator=g)
    model = tiny(4)
    threat = ThreatModel("l2", 0.0, bounds)  # eps is ignored by a minimal attack
    atk = CarliniWagnerL2(steps=30, binary_search_steps=4)
    a = atk(model, x, y, threat=threat)
    b = atk(model, x, y, threat=threat)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.passes, b.passes)
    assert bool(((a.x_adv >= lo) & (a.x_adv <= hi)).all())
    with torch.no_grad():
        pred = model(a.x_adv).argmax(1)
    assert torch.equal(a.success, pred != y)
    assert torch.allclose(a.distance, (a.x_adv - x).flatten(1).norm(dim=1))
    # samples never broken come back as the clean input (a copy)
    assert torch.equal(a.x_adv[~a.success], x[~a.success])
    assert a.x_adv.data_ptr() != x.data_ptr()
    assert bool((a.passes >= 1).all())


def test_no_side_effects():
    model = tiny(5)
    x = torch.rand(5, 1, 4, 4)
    y = torch.randint(0, 3, (5,))
    x_copy = x.clone()
    params = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    CarliniWagnerL2(steps=10, binary_search_steps=2)(model, x, Misclassification(y),
                                                     threat=ThreatModel("l2", 1.0))
    assert torch.equal(x, x_copy)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        CarliniWagnerL2(steps=3, binary_search_steps=1)(model, x, y, threat=ThreatModel("l2", 1.0))
    assert model.training


def test_more_search_steps_never_increase_the_distance_much():
    model = tiny(6)
    x = torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        y = model(x).argmax(1)
    few = CarliniWagnerL2(steps=50, binary_search_steps=2, initial_const=1.0)(
        model, x, y, threat=ThreatModel("l2", 1.0))
    many = CarliniWagnerL2(steps=50, binary_search_steps=8, initial_const=1.0)(
        model, x, y, threat=ThreatModel("l2", 1.0))
    # the search keeps the best point of every step: later steps can only improve
    assert bool((many.success | ~few.success).all())
    both = many.success & few.success
    assert bool((many.info["l2"][both] <= few.info["l2"][both] + 1e-6).all())


@pytest.mark.parametrize("kw", [{"steps": 0}, {"binary_search_steps": 0}, {"initial_const": 0.0},
                                {"step_size": -1.0}, {"kappa": -1.0}])
def test_bad_settings(kw):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        CarliniWagnerL2(**kw)(tiny(0), torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long),
                              threat=ThreatModel("l2", 1.0))

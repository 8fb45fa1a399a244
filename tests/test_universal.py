"""Universal adversarial perturbations (Moosavi-Dezfooli et al. 2017), on digits and known answers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from advlab.attacks.universal import UniversalAttack, UniversalPerturbation, deepfool_step
from advlab.criteria import TargetedMisclassification
from advlab.threat import ThreatModel


def _linear(d: int = 16, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 2)).eval()


@pytest.mark.parametrize("norm", ["l2", "linf", "l1"])
def test_deepfool_step_is_exact_on_an_affine_model(norm):  # type: ignore[no-untyped-def]
    model = _linear()
    x = torch.full((3, 1, 4, 4), 0.5)
    labels = model(x).argmax(1)
    w = (model[1].weight[1] - model[1].weight[0]).detach()
    margin = (model(x)[:, 1] - model(x)[:, 0]).abs().detach()
    r, passes = deepfool_step(model, x, labels, norm, steps=5, overshoot=0.0, bounds=(-10.0, 10.0))
    dist = {"l2": r.flatten(1).norm(dim=1), "linf": r.flatten(1).abs().amax(1),
            "l1": r.flatten(1).abs().sum(1)}[norm]
    dual = {"l2": w.norm(), "linf": w.abs().sum(), "l1": w.abs().max()}[norm]
    # minimal distance to the hyperplane in the norm = |margin| / ||w||_dual (plus the 1e-4 nudge)
    assert torch.allclose(dist, (margin + 1e-4) / dual, rtol=1e-3)
    with torch.no_grad():
        assert bool((model(x + r).argmax(1) != labels).all())
    assert bool((passes == 2).all())  # one linearisation, two classes


def test_fit_returns_self_and_learns_a_universal_direction(trained_softmax, digits_test):  # type: ignore[no-untyped-def]
    x, _ = digits_test.tensors()
    x_fit, x_test = x[:150], x[150:]
    threat = ThreatModel("linf", 0.25)
    up = UniversalPerturbation(max_passes=3, batch_size=8)
    assert up.fit(trained_softmax, x_fit, threat, generator=torch.Generator().manual_seed(0)) is up
    v = up.perturbation_
    assert v.shape == x.shape[1:]
    assert float(v.abs().max()) <= 0.25 + 1e-6
    fr = up.fooling_rate(trained_softmax, x_test)
    # random sign noise of the same Linf size, for comparison
    g = torch.Generator().manual_seed(1)
    noise = (torch.randint(0, 2, v.shape, generator=g) * 2 - 1) * 0.25
    with torch.no_grad():
        clean = trained_softmax(x_test).argmax(1)
        rnd = float((trained_softmax((x_test + noise).clamp(0, 1)).argmax(1) != clean).float().mean())
    # one perturbation for all held-out images beats noise (measured: 0.48 vs 0.13)
    assert fr > 0.35 and fr > rnd + 0.2
    assert up.fooling_rate_ == max(up.history_)
    assert torch.equal(up.transform(x_test), (x_test + v).clamp(0, 1))


def test_l2_and_determinism(trained_softmax, digits_test):  # type: ignore[no-untyped-def]
    x, _ = digits_test.tensors()
    threat = ThreatModel("l2", 1.5)
    a = UniversalPerturbation(max_passes=2, batch_size=16).fit(trained_softmax, x[:80], threat,
                                                              generator=torch.Generator().manual_seed(3))
    b = UniversalPerturbation(max_passes=2, batch_size=16).fit(trained_softmax, x[:80], threat,
                                                              generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.perturbation_, b.perturbation_)
    assert float(a.perturbation_.norm()) <= 1.5 + 1e-5


def test_validation(trained_softmax, digits_test):  # type: ignore[no-untyped-def]
    x, _ = digits_test.tensors()
    with pytest.raises(ValueError, match="not fitted"):
        UniversalPerturbation().transform(x)
    with pytest.raises(ValueError, match="max_passes"):
        UniversalPerturbation(max_passes=0).fit(trained_softmax, x[:5], ThreatModel("linf", 0.1))
    with pytest.raises(TypeError, match="ThreatModel"):
        UniversalPerturbation().fit(trained_softmax, x[:5], 0.1)  # type: ignore[arg-type]
    up = UniversalPerturbation(max_passes=1).fit(trained_softmax, x[:5], ThreatModel("linf", 0.0))
    assert torch.equal(up.perturbation_, torch.zeros_like(x[0]))
    with pytest.raises(ValueError, match="shape"):
        up.transform(torch.rand(2, 1, 4, 4))


def test_universal_attack_contract_extras(trained_softmax, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.tensors()
    x, y = x[:40], y[:40]
    trained_softmax = copy.deepcopy(trained_softmax)
    for p in trained_softmax.parameters():
        p.grad = None
    params = copy.deepcopy(trained_softmax.state_dict())
    rng = torch.get_rng_state()
    r = UniversalAttack(max_passes=2, batch_size=8)(trained_softmax, x, y, threat=ThreatModel("linf", 0.2),
                                                    generator=torch.Generator().manual_seed(0))
    assert torch.get_rng_state().equal(rng)
    assert all(torch.equal(v, params[k]) for k, v in trained_softmax.state_dict().items())
    assert all(p.grad is None for p in trained_softmax.parameters())
    delta = r.x_adv - x
    # one perturbation for all: where no pixel hits the bounds, every sample moved the same way
    inside = ((x + r.info["perturbation"]) >= 0) & ((x + r.info["perturbation"]) <= 1)
    assert torch.allclose(delta[inside], r.info["perturbation"].expand_as(x)[inside], atol=1e-6)
    with pytest.raises(ValueError, match="untargeted"):
        UniversalAttack()(trained_softmax, x, TargetedMisclassification(y), threat=ThreatModel("linf", 0.1))

"""Square attack: the paper's Linf scheme, query budget, and breaking a gradient-masked model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.attacks import APGD, Square
from advlab.attacks.square import square_fraction
from advlab.threat import ThreatModel


def test_schedule():
    assert square_fraction(0.8, 0, 10000) == 0.8
    assert square_fraction(0.8, 11, 10000) == 0.4
    assert square_fraction(0.8, 2, 1000) == 0.4  # rescaled to a 10,000-query budget
    assert square_fraction(0.8, 9999, 10000) == pytest.approx(0.8 / 512)


class Quantized(nn.Module):
    """A model whose input layer rounds to 4 levels: autograd sees zero gradients."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 3) / 3)


def test_linf_perturbation_is_at_the_vertices():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).eval()
    x = torch.rand(5, 3, 6, 6) * 0.5 + 0.25
    y = model(x).argmax(1)
    eps = 0.1
    r = Square(queries=50, early_stop=False)(model, x, y, threat=ThreatModel("linf", eps),
                                            generator=torch.Generator().manual_seed(0))
    delta = (r.x_adv - x).abs()
    # every pixel of a returned perturbation is at +-eps (stripes, then +-eps squares)
    moved = r.distance > 0
    assert bool(moved.any())
    assert torch.allclose(delta[moved], torch.full_like(delta[moved], eps), atol=1e-6)
    assert bool((r.forwards <= 50 + 1).all()) and bool((r.passes == 0).all())


def test_breaks_a_gradient_masking_model_where_apgd_fails(digits_test, trained_softmax):  # type: ignore[no-untyped-def]
    model = Quantized(trained_softmax).eval()
    x, y = digits_test.subset(limit=60).tensors()
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok], y[ok]
    threat = ThreatModel("linf", 0.3)
    apgd = APGD(steps=20, random_init=False)(model, x, y, threat=threat)
    sq = Square(queries=300)(model, x, y, threat=threat, generator=torch.Generator().manual_seed(0))
    assert apgd.success_rate == 0.0  # zero gradients: APGD never moves
    assert sq.success_rate > 0.5
    with torch.no_grad():
        assert torch.equal(sq.success, model(sq.x_adv).argmax(1) != y)


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_other_norms_stay_in_the_ball_and_make_progress(norm, digits_test, trained_softmax):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=40).tensors()
    eps = {"l2": 2.0, "l1": 12.0}[norm]
    threat = ThreatModel(norm, eps)
    r = Square(queries=200)(trained_softmax, x, y, threat=threat,
                            generator=torch.Generator().manual_seed(0))
    assert bool(threat.contains(r.x_adv, x).all())
    with torch.no_grad():
        clean_wrong = float((trained_softmax(x).argmax(1) != y).float().mean())
    assert r.success_rate > clean_wrong + 0.1


def test_early_stop_spends_fewer_queries(digits_test, trained_softmax):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=30).tensors()
    threat = ThreatModel("linf", 0.2)
    a = Square(queries=100)(trained_softmax, x, y, threat=threat,
                            generator=torch.Generator().manual_seed(1))
    b = Square(queries=100, early_stop=False)(trained_softmax, x, y, threat=threat,
                                             generator=torch.Generator().manual_seed(1))
    assert int(a.forwards.sum()) < int(b.forwards.sum())
    with torch.no_grad():
        wrong = trained_softmax(x).argmax(1) != y
    assert bool(wrong.any())
    # misclassified clean points cost one query; the others the full budget (+1 clean query)
    assert bool((b.forwards[wrong] == 1).all()) and bool((b.forwards[~wrong] == 101).all())


def test_bad_settings():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    for atk in (Square(queries=0), Square(p_init=0.0), Square(restarts=0)):
        with pytest.raises(ValueError):
            atk(model, torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long),
                threat=ThreatModel("linf", 0.1))


def test_l2_patterns_are_unit_centre_surround() -> None:
    from advlab.attacks.square import meta_pseudo_gaussian, pseudo_gaussian

    eta = pseudo_gaussian(5, 5)
    assert float(eta.norm()) == pytest.approx(1.0)
    assert float(eta[2, 2]) == float(eta.max())  # the centre is the peak
    assert torch.equal(eta, eta.flip(0)) and torch.equal(eta, eta.t())
    rings = [float(eta[2, 2]), float(eta[1, 2]), float(eta[0, 2])]  # 1+1/4+1/9, 1/4+1/9, 1/9
    assert rings[0] / rings[2] == pytest.approx((1 + 1 / 4 + 1 / 9) / (1 / 9))
    assert rings[1] / rings[2] == pytest.approx((1 / 4 + 1 / 9) / (1 / 9))
    meta = meta_pseudo_gaussian(5, transpose=False)
    assert float(meta.norm()) == pytest.approx(1.0)
    assert bool((meta[:2] > 0).all()) and bool((meta[2:] < 0).all())  # two lobes, opposite signs
    assert torch.equal(meta_pseudo_gaussian(5, transpose=True), meta.t())


def test_l2_square_stays_in_the_ball_and_box_and_spends_its_budget() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    x = torch.rand(6, 1, 8, 8)
    y = model(x).argmax(1)
    threat = ThreatModel("l2", 0.5)
    g = torch.Generator().manual_seed(0)
    r = Square(queries=200, early_stop=False)(model, x, y, threat=threat, generator=g)
    d = (r.x_adv - x).flatten(1).norm(dim=1)
    assert bool((d <= 0.5 + 1e-5).all())
    assert bool((r.x_adv >= 0).all() and (r.x_adv <= 1).all())
    # the L2 scheme keeps the norm at eps before clipping: far from the box faces, it is used
    xm = torch.full((4, 1, 8, 8), 0.5)
    ym = model(xm).argmax(1)
    r = Square(queries=50, early_stop=False)(model, xm, ym, threat=threat, generator=g)
    dm = (r.x_adv - xm).flatten(1).norm(dim=1)
    assert bool((dm > 0.5 * 0.99).all()), dm

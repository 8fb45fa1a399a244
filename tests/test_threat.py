"""Norm strategies and threat models: projections, sampling, validation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advlab.threat import L1Norm, L2Norm, LinfNorm, ThreatModel, get_norm


def l1_project_bisect(v: torch.Tensor, eps: float) -> torch.Tensor:
    """Reference L1 projection by bisection on the soft threshold."""
    if v.abs().sum() <= eps:
        return v
    lo, hi = 0.0, float(v.abs().max())
    for _ in range(200):
        mid = (lo + hi) / 2
        if (v.abs() - mid).clamp_min(0).sum() > eps:
            lo = mid
        else:
            hi = mid
    return v.sign() * (v.abs() - hi).clamp_min(0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.01, 5.0), d=st.integers(1, 30))
def test_l1_projection_matches_bisection(seed, eps, d):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(3, d, generator=g, dtype=torch.float64) * 2
    p = L1Norm().project(v, eps)
    for i in range(3):
        assert torch.allclose(p[i], l1_project_bisect(v[i], eps), atol=1e-6)
    assert bool((p.abs().sum(1) <= eps + 1e-9).all())


@pytest.mark.parametrize("norm", [LinfNorm(), L2Norm(), L1Norm()])
def test_projection_is_idempotent_and_shrinks(norm):  # type: ignore[no-untyped-def]
    v = torch.randn(8, 1, 5, 5)
    p = norm.project(v, 0.7)
    assert torch.allclose(norm.project(p, 0.7), p, atol=1e-6)
    assert bool((norm.norm(p) <= 0.7 + 1e-5).all())
    small = v * 1e-4
    assert torch.allclose(norm.project(small, 0.7), small)


@pytest.mark.parametrize("norm", [LinfNorm(), L2Norm(), L1Norm()])
def test_random_init_inside_ball_and_seeded(norm):  # type: ignore[no-untyped-def]
    kw = {"device": torch.device("cpu"), "dtype": torch.float32}
    a = norm.random_init((500, 1, 3, 3), 0.5, generator=torch.Generator().manual_seed(0), **kw)
    b = norm.random_init((500, 1, 3, 3), 0.5, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a, b)
    n = norm.norm(a)
    assert bool((n <= 0.5 + 1e-5).all())
    # uniform in a d=9 ball: P(||x|| <= r/2) = 2^-9; and not all on the sphere
    assert float((n <= 0.25).float().mean()) < 0.02
    assert float((n < 0.49).float().mean()) > 0.05


@pytest.mark.parametrize("norm", [LinfNorm(), L2Norm(), L1Norm()])
def test_normalize_grad_has_unit_norm(norm):  # type: ignore[no-untyped-def]
    g = torch.randn(4, 1, 6, 6)
    d = norm.normalize_grad(g)
    expected = {"linf": 1.0, "l2": 1.0, "l1": 1.0}[norm.name]
    assert torch.allclose(norm.norm(d), torch.full((4,), expected), atol=1e-5)
    # steepest ascent: positive inner product with the gradient
    assert bool(((d * g).flatten(1).sum(1) > 0).all())


def test_threat_model_validation_and_contains():
    t = ThreatModel("Linf", 0.1)
    assert t.norm == "linf" and t.eps == 0.1
    x = torch.rand(3, 4)
    xa = (x + 0.1).clamp(0, 1)
    assert bool(t.contains(xa, x).all())
    assert not bool(t.contains((x + 0.2).clamp(0, 1), x).all() and (x < 0.8).all())
    with pytest.raises(ValueError, match="norm"):
        ThreatModel("l7", 0.1)
    with pytest.raises(ValueError, match="bounds"):
        ThreatModel("l2", 0.1, (1.0, 0.0))
    with pytest.raises(TypeError):
        ThreatModel("l2", "big")  # type: ignore[arg-type]
    assert get_norm("inf").name == "linf"
    assert ThreatModel("l2", 1).to_dict() == {"norm": "l2", "eps": 1.0, "bounds": [0.0, 1.0]}


def test_l0_counts_projects_to_the_largest_changes_and_samples_k_coordinates():
    from advlab.threat import get_norm

    l0 = get_norm("l0")
    d = torch.tensor([[0.0, -3.0, 1.0, 2.0, 0.5], [1.0, 1.0, 0.0, 0.0, 0.0]])
    assert l0.norm(d).tolist() == [4.0, 2.0]
    assert l0.project(d, 2).tolist() == [[0.0, -3.0, 0.0, 2.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0]]
    assert l0.project(d, 2.9).tolist() == l0.project(d, 2).tolist()  # a count: rounded down
    assert torch.equal(l0.project(d, 0), torch.zeros_like(d))
    assert l0.normalize_grad(torch.tensor([[0.1, -0.7, 0.3]])).tolist() == [[0.0, -1.0, 0.0]]
    r = l0.random_init((6, 1, 3, 3), 4, generator=torch.Generator().manual_seed(0),
                       device=torch.device("cpu"), dtype=torch.float32)
    assert l0.norm(r).tolist() == [4.0] * 6 and bool((r.abs() <= 1).all())
    t = ThreatModel("l0", 2, (0.0, 1.0))
    x = torch.zeros(2, 4)
    assert t.contains(x + torch.tensor([[1.0, 1.0, 0, 0], [1.0, 1.0, 1.0, 0]]), x).tolist() == [True, False]

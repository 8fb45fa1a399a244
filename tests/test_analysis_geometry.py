"""Known answers for cross sections, decision maps, same-norm perturbations and GAAS subspaces."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advlab.analysis import (
    activation_patterns,
    adversarial_subspace,
    cross_section,
    decision_maps,
    fgsm_direction,
    gaas_directions,
    random_sign_direction,
    same_norm_perturbations,
)
from advlab.models import create_model


def _logistic(w: torch.Tensor, b: float) -> nn.Module:
    """A logistic regression on (1, 2, 2) inputs with known weights (no normalization)."""
    m = create_model("logistic", in_shape=(1, 2, 2))
    with torch.no_grad():
        m.linear.weight.copy_(w.reshape(1, -1))
        m.linear.bias.fill_(b)
    return m.eval()


class OneReLU(nn.Module):
    """logits = (0, relu(w.x)): exactly two linear pieces along any line crossing w.x = 0."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.lin = nn.Linear(w.numel(), 1, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(w.reshape(1, -1))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.lin(x.flatten(1)))
        return torch.cat([torch.zeros_like(h), h], dim=1)


# ----------------------------------------------------------------------------- cross sections


def test_linear_model_has_exactly_one_piece_and_linear_logits(trained_softmax, digits_test):
    x, y = digits_test.tensors()
    d = fgsm_direction(trained_softmax, x[:1], y[:1])[0]
    cs = cross_section(trained_softmax, x[0], d, span=2.0, steps=101, label=int(y[0]))
    assert cs.n_pieces == 1 and cs.breakpoints == [] and cs.n_units == 0
    # the logits are exactly affine in t: compare with W(x + t d) + b computed by hand
    expected = trained_softmax(x[0][None] + cs.t.reshape(-1, 1, 1, 1) * d[None]).detach()
    assert torch.allclose(cs.logits, expected, atol=1e-4)
    assert bool((cs.tail_r2 > 0.99999).all())
    # the FGSM direction lowers the true logit relative to the others (its slope is the smallest)
    assert int(cs.tail_slope.argmin()) == int(y[0]) or cs.predicted[-1] != y[0]


def test_one_relu_gives_two_pieces_with_the_breakpoint_where_the_unit_switches():
    w = torch.tensor([1.0, -2.0, 0.5, 1.0])
    x = torch.tensor([0.2, 0.1, 0.4, 0.3]).reshape(1, 2, 2)
    d = torch.tensor([1.0, 1.0, -1.0, -1.0]).reshape(1, 2, 2)
    t_star = -float(w @ x.reshape(-1)) / float(w @ d.reshape(-1))  # w.(x + t d) = 0
    cs = cross_section(OneReLU(w).eval(), x, d, span=2.0, steps=2001)
    assert cs.n_pieces == 2 and cs.n_units == 1
    assert abs(cs.breakpoints[0] - t_star) <= 2 * 4.0 / 2000


def test_cnn_patterns_count_relu_and_pool_units_and_cross_section_is_piecewise():
    torch.manual_seed(0)
    cnn = create_model("cnn", in_shape=(1, 8, 8), channels=(2, 3), fc=5).eval()
    x = torch.rand(3, 1, 8, 8)
    logits, pat = activation_patterns(cnn, x)
    # ReLU units: 2*8*8 + 3*4*4 + 5; max-pool windows: 2*4*4 + 3*2*2
    assert pat.shape == (3, 128 + 48 + 5 + 32 + 12)
    assert torch.allclose(logits, cnn(x).detach())
    d = random_sign_direction(x[0].shape, generator=torch.Generator().manual_seed(0))
    cs = cross_section(cnn, x[0], d, span=3.0, steps=301)
    assert cs.n_pieces > 1
    # far from the data the activation pattern freezes: the outer half of a long path is one
    # linear piece, so every logit is exactly linear there
    far = cross_section(cnn, x[0], d, span=200.0, steps=801)
    assert all(abs(b) < 100 for b in far.breakpoints)
    assert bool((far.tail_r2 > 0.99999).all())


def test_cross_section_validates_shapes():
    m = _logistic(torch.ones(4), 0.0)
    with pytest.raises(ValueError, match="one input"):
        cross_section(m, torch.rand(2, 1, 2, 2), torch.rand(2, 1, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        cross_section(m, torch.rand(1, 2, 2), torch.rand(1, 2, 3))


def test_fgsm_direction_of_logistic_regression_is_minus_sign_w_for_class_1():
    w = torch.tensor([1.0, -2.0, 0.5, -0.1])
    m = _logistic(w, 0.0)
    x = torch.full((2, 1, 2, 2), 0.5)
    d = fgsm_direction(m, x, torch.tensor([1, 0]))
    assert torch.equal(d[0].reshape(-1), -w.sign())
    assert torch.equal(d[1].reshape(-1), w.sign())


# ----------------------------------------------------------------------------- decision maps


def test_decision_map_fractions_match_the_half_plane_of_a_linear_model():
    w = torch.tensor([1.5, -2.0, 0.7, 1.1])
    b = -0.4
    m = _logistic(w, b)
    x = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    y = (m(x).argmax(1)).detach()  # the model is right on every clean input
    res = decision_maps(m, x, y, eps=0.6, resolution=11, bounds=None,
                        generator=torch.Generator().manual_seed(0))
    z = (x.reshape(6, -1) @ w + b)
    from advlab.analysis.decision_map import map_directions

    u, v, _ = map_directions(m, x, y, generator=torch.Generator().manual_seed(0))
    wu, wv = u.reshape(6, -1) @ w, v.reshape(6, -1) @ w
    a = res.coords
    score = z[:, None, None] + a[None, None, :] * wu[:, None, None] + a[None, :, None] * wv[:, None, None]
    expected = (score > 0).long()
    assert torch.equal(res.predictions, expected)
    assert torch.allclose(res.misclassified_fraction, (expected != y[:, None, None]).float().mean((1, 2)))
    assert bool(res.clean_correct.all())
    # the vertical random direction is orthogonal to the horizontal one, same L2 norm
    assert torch.allclose((u * v).flatten(1).sum(1), torch.zeros(6), atol=1e-5)
    assert torch.allclose(u.flatten(1).norm(dim=1), v.flatten(1).norm(dim=1))


def test_adversarial_maps_misclassify_more_than_random_maps(trained_softmax, digits_test):
    x, y = digits_test.tensors()
    x, y = x[:20], y[:20]
    g = torch.Generator().manual_seed(0)
    adv = decision_maps(trained_softmax, x, y, kind="adversarial-random", eps=0.3, resolution=9,
                        generator=g)
    both = decision_maps(trained_softmax, x, y, kind="adversarial-adversarial", eps=0.3,
                         resolution=9, generator=g)
    rnd = decision_maps(trained_softmax, x, y, kind="random-random", eps=0.3, resolution=9,
                        generator=g)
    assert adv.predictions.shape == (20, 9, 9)
    assert rnd.mean_misclassified < adv.mean_misclassified <= both.mean_misclassified + 0.05
    assert float(both.cosines.mean()) > 0.3 > float(rnd.cosines.abs().mean())
    # the centre cell is the clean input
    assert torch.equal(adv.predictions[:, 4, 4] == y, adv.clean_correct)


# ----------------------------------------------------------------------------- same L2 norm


def test_same_norm_perturbations_share_the_radius_of_the_nearest_neighbour(
        trained_softmax, digits_train, digits_test):
    x, y = digits_test.tensors()
    i = int((y == 3).nonzero()[0])
    sevens = digits_train.subset(classes=[7]).tensors()[0]
    res = same_norm_perturbations(trained_softmax, x[i], 3, sevens, neighbour_class=7,
                                  generator=torch.Generator().manual_seed(0))
    brute = (sevens.flatten(1) - x[i].reshape(1, -1)).norm(dim=1)
    assert res.neighbour_index == int(brute.argmin())
    assert math.isclose(res.radius, float(brute.min()), rel_tol=1e-6)
    assert torch.allclose(res.l2, torch.full((4,), res.radius), rtol=1e-3)
    assert bool((res.images >= 0).all() and (res.images <= 1).all())
    # the neighbour changes pixels by up to 1, the random direction by far less
    # erasing scales the image: its max-norm change is max(x) * r / ||x||
    assert math.isclose(float(res.linf[2]), float(x[i].max()) * res.radius / float(x[i].norm()),
                        rel_tol=1e-5)
    assert bool((res.linf >= res.l2 / 8 - 1e-6).all())  # ||d||_inf >= ||d||_2 / sqrt(64)
    assert int(res.predictions[0]) == 7 and res.clean_prediction == 3
    assert int(res.predictions[2]) == 3  # erasing keeps the class for a linear model
    assert int(res.predictions[3]) != 3  # a gradient step of the same norm fools it


# ----------------------------------------------------------------------------- GAAS subspaces


@pytest.mark.parametrize("k", [1, 2, 7, 30])
def test_gaas_directions_are_orthonormal_and_equally_aligned(k):
    g = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(k))
    r = gaas_directions(g, k, generator=torch.Generator().manual_seed(0)).reshape(k, -1).double()
    assert torch.allclose(r @ r.t(), torch.eye(k, dtype=torch.float64), atol=1e-5)
    align = r @ (g.reshape(-1).double() / g.norm().double())
    assert torch.allclose(align, torch.full((k,), 1 / math.sqrt(k), dtype=torch.float64), atol=1e-5)


def test_gaas_count_on_a_linear_model_is_the_known_threshold():
    torch.manual_seed(0)
    d = 64
    w = torch.randn(d)
    m = create_model("logistic", in_shape=(1, 8, 8)).eval()
    with torch.no_grad():
        m.linear.weight.copy_(w[None])
        m.linear.bias.zero_()
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    y = m(x).argmax(1).detach()
    eps = 1.0
    ks = [1, 2, 3, 5, 8, 13, 21, 34, 55]
    res = adversarial_subspace(m, x, y, eps=eps, ks=ks, bounds=None,
                               generator=torch.Generator().manual_seed(0))
    margin = (x.reshape(5, -1) @ w).abs()
    # the score moves by eps * ||w|| / sqrt(k) along every direction: all k are adversarial
    # while k < (eps ||w|| / margin)^2, none beyond
    threshold = (eps * w.norm() / margin).pow(2)
    expected = torch.tensor([max([k for k in ks if k < float(t)], default=0) for t in threshold])
    assert res.n == 5
    assert torch.equal(res.n_adversarial, expected)
    # a second copy of the same model receives every adversarial direction
    res2 = adversarial_subspace(m, x, y, eps=eps, ks=ks, bounds=None, transfer_model=m,
                                generator=torch.Generator().manual_seed(0))
    assert res2.n_transfer is not None and torch.equal(res2.n_transfer, expected)


def test_gaas_validates_and_leaves_inputs_alone(trained_softmax, digits_test):
    x, y = digits_test.tensors()
    x0 = x[:4].clone()
    grads = [None if p.grad is None else p.grad.clone() for p in trained_softmax.parameters()]
    with pytest.raises(ValueError, match="increasing"):
        adversarial_subspace(trained_softmax, x[:4], y[:4], ks=[5, 2])
    res = adversarial_subspace(trained_softmax, x[:4], y[:4], eps=2.0, ks=[1, 4, 16])
    assert torch.equal(x[:4], x0)
    for g0, p in zip(grads, trained_softmax.parameters(), strict=True):
        assert (g0 is None and p.grad is None) or torch.equal(g0, p.grad)
    assert not trained_softmax.training
    assert res.counts.shape == (res.n, 3)

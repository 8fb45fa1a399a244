"""FMN: known answers on affine models, the robust-accuracy curve of PGD, targeting, the contract."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from advlab.attacks import PGD
from advlab.attacks.fmn import FMN
from advlab.criteria import Misclassification, TargetedMisclassification
from advlab.threat import ThreatModel

# ----------------------------------------------------------------------------- affine models


def affine(d: int, classes: int, seed: int,
           centred: bool = True) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(classes, d, generator=g)
    b = torch.randn(classes, generator=g) * 0.3
    if centred:  # boundaries near the centre of the box
        b = b - 0.5 * w.sum(1)
    lin = nn.Linear(d, classes)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    return nn.Sequential(nn.Flatten(), lin).eval(), w, b


def inner_points(n: int, d: int, seed: int) -> torch.Tensor:
    """Inputs well inside the box [0, 1]: every coordinate in [0.4, 0.6]."""
    return 0.4 + 0.2 * torch.rand(n, 1, d, generator=torch.Generator().manual_seed(seed))


def hyperplane_distances(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    """Exact minimal untargeted distance of an affine model (no box): min_k |f_k - f_y| / ||w_k - w_y||_*."""
    z = x.flatten(1) @ w.T + b
    y = z.argmax(1)
    wd = w[None, :, :] - w[y][:, None, :]
    fd = (z - z.gather(1, y[:, None])).abs()
    dual = {"l2": wd.norm(dim=2), "linf": wd.abs().sum(2), "l1": wd.abs().amax(2)}[norm]
    dist = fd / dual
    dist[torch.arange(x.shape[0]), y] = math.inf
    return dist.min(1).values


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_norm_equals_distance_to_the_hyperplane(norm):  # type: ignore[no-untyped-def]
    d, n = 16, 20
    model, w, b = affine(d, 2, seed=2)
    x = inner_points(n, d, seed=1)
    y = model(x).argmax(1)
    exact = hyperplane_distances(x, w, b, norm)  # |w.x + b| / ||w||_2 (l2) or / ||w||_1 (linf)
    # the minimiser (x + t * dual direction) stays inside the box, so the box does not bind
    assert float(exact.max()) < 0.4
    r = FMN()(model, x, y, threat=ThreatModel(norm, 0.0))
    assert bool(r.success.all())
    assert torch.allclose(r.info["norm"], exact, rtol=0.02, atol=0)
    # nothing adversarial is closer than the exact minimum
    assert bool((r.info["norm"] >= exact * (1 - 1e-4)).all())


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_multiclass_affine_never_below_the_minimum_mostly_at_it(norm):  # type: ignore[no-untyped-def]
    # FMN follows the margin to the *most likely* other class, whose boundary need not be the
    # nearest one: on 5 classes it ends at a farther boundary for 2 of these 20 samples (a local
    # optimum of the non-convex problem; DeepFool, which tries every class, is exact here)
    model, w, b = affine(16, 5, seed=5)
    x = inner_points(20, 16, seed=1)
    y = model(x).argmax(1)
    exact = hyperplane_distances(x, w, b, norm)
    r = FMN()(model, x, y, threat=ThreatModel(norm, 0.0))
    assert bool(r.success.all())
    assert bool((r.info["norm"] >= exact * (1 - 1e-4)).all())
    assert int((r.info["norm"] <= exact * 1.02).sum()) >= 16


def l1_box_distance(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Minimal L1 perturbation of a binary affine classifier inside [0, 1] (a fractional knapsack).

    Push the margin to zero spending the coordinates of largest ``|w_i|`` first, each up to the box.
    """
    wd, bd = w[1] - w[0], b[1] - b[0]
    out = []
    for xi in x.flatten(1):
        f = float(xi @ wd + bd)
        need = abs(f)
        up = -math.copysign(1.0, f) * wd.sign() > 0  # coordinates that move up to reduce |f|
        room = torch.where(up, 1 - xi, xi)
        dist = 0.0
        for j in wd.abs().argsort(descending=True).tolist():
            a = float(wd[j].abs())
            take = min(float(room[j]), need / a)
            dist += take
            need -= a * take
            if need <= 1e-12:
                break
        out.append(dist)
    return torch.tensor(out)


def test_l1_norm_equals_the_box_constrained_minimum():
    d, n = 16, 20
    model, w, b = affine(d, 2, seed=0, centred=False)
    x = inner_points(n, d, seed=0)
    y = model(x).argmax(1)
    exact = l1_box_distance(x, w, b)
    # the box binds here: the unconstrained answer |f| / ||w||_inf is infeasible for some samples
    assert bool((exact > hyperplane_distances(x, w, b, "l1") * 1.05).any())
    r = FMN()(model, x, y, threat=ThreatModel("l1", 0.0))
    assert bool(r.success.all())
    assert torch.allclose(r.info["norm"], exact, rtol=0.02, atol=0)
    assert bool((r.info["norm"] >= exact * (1 - 1e-4)).all())


def test_targeted_reaches_the_target():
    d, classes = 16, 4
    model, w, b = affine(d, classes, seed=3)
    x0 = inner_points(6, d, seed=2)
    x = x0.repeat_interleave(classes, 0)
    t = torch.arange(classes).repeat(6)
    pred = model(x).argmax(1)
    keep = t != pred  # every other class of every sample
    x, t = x[keep], t[keep]
    r = FMN()(model, x, TargetedMisclassification(t), threat=ThreatModel("l2", 0.0, (-5.0, 5.0)))
    assert bool(r.success.all())
    with torch.no_grad():
        assert torch.equal(model(r.x_adv).argmax(1), t)
    # reaching one given class costs at least leaving the label by the nearest boundary
    assert bool((r.info["norm"] >= hyperplane_distances(x, w, b, "l2") * (1 - 1e-4)).all())
    assert bool(torch.isfinite(r.info["norm"]).all())


# ----------------------------------------------------------------------------- a trained MLP


def blobs(seed: int, n: int, d: int = 8, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    centers = 0.25 + 0.5 * torch.rand(classes, d, generator=torch.Generator().manual_seed(123))
    y = torch.arange(n) % classes
    x = centers[y] + 0.15 * torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    x, y = blobs(0, 300)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def robust_counts(success: torch.Tensor, norm: torch.Tensor, grid: tuple[float, ...]) -> list[int]:
    return [int((~(success & (norm <= eps))).sum()) for eps in grid]


GRIDS = {"l2": (0.05, 0.1, 0.15, 0.2, 0.3, 0.4), "linf": (0.03, 0.06, 0.09, 0.12, 0.15, 0.2)}


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_robust_accuracy_curve_matches_separate_pgd_runs(mlp, norm):  # type: ignore[no-untyped-def]
    x, y = blobs(1, 60)
    grid = GRIDS[norm]
    r = FMN()(mlp, x, y, threat=ThreatModel(norm, 0.0))
    fmn = robust_counts(r.success, r.info["norm"], grid)
    pgd = []
    for eps in grid:
        p = PGD(steps=100, rel_step_size=0.05, restarts=3)(
            mlp, x, y, threat=ThreatModel(norm, eps), generator=torch.Generator().manual_seed(0))
        pgd.append(int((~p.success).sum()))
    assert len(set(pgd)) >= 4, "the grid must span the curve"
    assert all(abs(a - b) <= 1 for a, b in zip(fmn, pgd, strict=True)), (fmn, pgd)
    # the comparison can fail: norms 25% too large shift the curve by more than one sample
    worse = robust_counts(r.success, r.info["norm"] * 1.25, grid)
    assert any(abs(a - b) > 1 for a, b in zip(worse, pgd, strict=True))


@pytest.mark.parametrize("norm", ["l2", "linf", "l1"])
@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 3.0)])
def test_success_is_real_and_inside_the_box(mlp, norm, bounds):  # type: ignore[no-untyped-def]
    lo, hi = bounds
    x, y = blobs(2, 24)
    x = lo + (hi - lo) * x
    model = nn.Sequential(_Affine(1 / (hi - lo), -lo / (hi - lo)), mlp).eval()
    x_copy = x.clone()
    attack = FMN(steps=30, binary_search_steps=3)
    r = attack(model, x, y, threat=ThreatModel(norm, 0.0, bounds))
    assert torch.equal(x, x_copy)
    assert all(p.grad is None for p in model.parameters())
    assert bool(((r.x_adv >= lo) & (r.x_adv <= hi)).all())
    with torch.no_grad():
        logits = model(r.x_adv)
    assert torch.equal(r.success, logits.argmax(1) != y)
    assert torch.allclose(r.logits, logits)
    dist = ThreatModel(norm, 0.0).strategy.distance(r.x_adv, x)
    assert torch.allclose(r.distance, dist)
    assert torch.equal(r.info["norm"], torch.where(r.success, r.distance, torch.full_like(dist, math.inf)))
    assert bool(r.success.float().mean() > 0.9)
    assert bool((r.passes == 30).all())
    # the last iterate, the bisection (adversarial samples only) and the final check
    assert torch.equal(r.forwards, 2 + 3 * r.success.long())
    # no randomness: the same answer again, and batch by batch
    again = attack(model, x, y, threat=ThreatModel(norm, 0.0, bounds), batch_size=5)
    assert torch.allclose(again.x_adv, r.x_adv, atol=1e-6)
    assert torch.allclose(again.info["norm"], r.info["norm"], atol=1e-6)


class _Affine(nn.Module):
    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def test_unbreakable_samples_return_the_clean_input_and_broken_ones_norm_zero():
    model, _, _ = affine(4, 3, seed=0)
    with torch.no_grad():  # a constant classifier: always class 0
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([2.0, 0.0, -1.0]))
    x = torch.rand(4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 0, 1, 2])  # the last two are already misclassified
    r = FMN(steps=10)(model, x, Misclassification(y), threat=ThreatModel("l2", 0.0))
    assert r.success.tolist() == [False, False, True, True]
    assert torch.equal(r.x_adv, x) and r.x_adv.data_ptr() != x.data_ptr()
    assert r.info["norm"].tolist() == [math.inf, math.inf, 0.0, 0.0]


def test_binary_search_only_shrinks(mlp):  # type: ignore[no-untyped-def]
    x, y = blobs(3, 30)
    plain = FMN(steps=10)(mlp, x, y, threat=ThreatModel("l2", 0.0))
    searched = FMN(steps=10, binary_search_steps=8)(mlp, x, y, threat=ThreatModel("l2", 0.0))
    assert torch.equal(plain.success, searched.success)
    assert bool((searched.distance <= plain.distance + 1e-6).all())


def test_model_state_is_restored(mlp):  # type: ignore[no-untyped-def]
    model = copy.deepcopy(mlp).train()
    x, y = blobs(4, 6)
    with pytest.warns(UserWarning, match="train mode"):
        FMN(steps=3)(model, x, y, threat=ThreatModel("linf", 0.0))
    assert model.training


@pytest.mark.parametrize("bad", [dict(steps=0), dict(step_size=-1.0), dict(final_step_size=0.0),
                                 dict(gamma_init=1.0), dict(gamma_final=-0.1),
                                 dict(binary_search_steps=-1), dict(steps=2.5)])
def test_bad_settings_are_rejected(bad):  # type: ignore[no-untyped-def]
    model, _, _ = affine(4, 2, seed=0)
    x = torch.rand(2, 4)
    with pytest.raises(ValueError):
        FMN(**bad)(model, x, torch.tensor([0, 1]), threat=ThreatModel("l2", 0.0))


# ----------------------------------------------------------------------------- the step's geometry


def _one_step(norm: str, x: torch.Tensor, grad: torch.Tensor, eps: float) -> torch.Tensor:
    from advlab.attacks.fmn import FMNStep

    rule = FMNStep(steps=10, alpha=(0.05, 0.0005), gamma=(0.05, 0.001))
    threat = ThreatModel(norm, 0.0)
    rule._start(x, x, threat)
    assert rule.eps is not None
    rule.eps.fill_(eps)
    rule.found.fill_(True)  # past the first adversarial: the radius only scales by 1 +- gamma
    rule.margin = torch.full((x.shape[0],), -1.0)
    rule.success = torch.zeros(x.shape[0], dtype=torch.bool)
    return rule.step(1, x.clone(), x, grad, threat) - x


def test_l2_step_lands_on_the_sphere_and_linf_inside_the_ball() -> None:
    """L2: the perturbation is rescaled to norm eps even after a small step (as the authors'
    code does; with the ball FMN-L2 left 28% of a PGD-AT CNN unbroken); Linf: clipped to the
    ball, so a small step stays inside it."""
    g = torch.Generator().manual_seed(0)
    x = 0.4 + 0.2 * torch.rand(5, 1, 50, generator=g)
    grad = torch.randn(5, 1, 50, generator=g)
    grown = 0.3 * (1 + 0.05 * (1 + math.cos(math.pi / 10)) / 2 + 0.001 * (1 - math.cos(math.pi / 10)) / 2)
    d2 = _one_step("l2", x, grad, 0.3)
    assert torch.allclose(d2.flatten(1).norm(dim=1), torch.full((5,), grown), rtol=1e-4)
    dinf = _one_step("linf", x, grad, 0.3)
    assert float(dinf.abs().amax()) < 0.05  # the 0.05-long L2 step, not pushed out to 0.3


def test_linf_default_step_grows_with_the_square_root_of_the_dimension() -> None:
    threat = ThreatModel("linf", 0.0)
    assert FMN().step_sizes(threat, 784) == pytest.approx((784 ** 0.5 / 3, 784 ** 0.5 / 300))
    assert FMN().step_sizes(ThreatModel("l2", 0.0), 784) == (1.0, 0.01)
    assert FMN(step_size=2.0).step_sizes(threat, 784) == (2.0, 0.02)

"""FAB / FAB-T: exact projections, known minimal distances on affine models, real success, the target loop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from advlab.attacks import DeepFool
from advlab.attacks.fab import FAB, FABT, project_hyperplane_box
from advlab.criteria import Misclassification, TargetedMisclassification
from advlab.threat import ThreatModel

WIDE = (-10.0, 10.0)  # inputs lie in [0.4, 0.6]: the box never binds
NORMS = ["linf", "l2", "l1"]


def dual(v: torch.Tensor, norm: str) -> torch.Tensor:
    return {"linf": v.abs().sum(-1), "l2": v.norm(dim=-1), "l1": v.abs().amax(-1)}[norm]


Affine = tuple[nn.Module, torch.Tensor, torch.Tensor]


def affine(d: int, classes: int, seed: int, bias: torch.Tensor | None = None) -> Affine:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(classes, d, generator=g)
    b = torch.randn(classes, generator=g) * 0.1 if bias is None else bias
    lin = nn.Linear(d, classes)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    return nn.Sequential(nn.Flatten(), lin).eval(), w, b


def inputs(n: int, seed: int = 0) -> torch.Tensor:
    return 0.4 + 0.2 * torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def closest_boundary(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, y: torch.Tensor,
                     norm: str) -> torch.Tensor:
    """Exact minimal untargeted distance for an affine classifier: the nearest f_k = f_y, k != y."""
    z = x.flatten(1) @ w.T + b
    wd = w[None, :, :] - w[y][:, None, :]
    dist = (z - z.gather(1, y[:, None])).abs() / dual(wd, norm)
    dist[torch.arange(len(y)), y] = float("inf")
    return dist.min(1).values


# ----------------------------------------------------------------------------- the projection


@pytest.mark.parametrize("norm", NORMS)
def test_projection_is_the_exact_box_constrained_minimum(norm):  # type: ignore[no-untyped-def]
    so = pytest.importorskip("scipy.optimize")
    import numpy as np

    g = torch.Generator().manual_seed(3)
    m, d = 40, 6
    p = torch.rand(m, d, generator=g, dtype=torch.float64)
    w = torch.randn(m, d, generator=g, dtype=torch.float64)
    r = torch.randn(m, generator=g, dtype=torch.float64) * 0.5
    dd = project_hyperplane_box(p, w, r, 0.0, 1.0, norm)
    assert bool(((p + dd) >= -1e-12).all() and ((p + dd) <= 1 + 1e-12).all())
    checked = 0
    for i in range(m):
        lo, hi, wi, ri = -p[i].numpy(), 1 - p[i].numpy(), w[i].numpy(), float(r[i])
        eye, one = np.eye(d), np.ones((d, 1))
        if norm == "l2":
            res = so.minimize(lambda v: (v ** 2).sum(), np.zeros(d), jac=lambda v: 2 * v, method="SLSQP",
                              constraints=[{"type": "eq", "fun": lambda v, wi=wi, ri=ri: wi @ v - ri}],
                              bounds=list(zip(lo, hi, strict=True)), options={"ftol": 1e-14, "maxiter": 500})
            ok, best = bool(res.success), float(np.sqrt(res.fun))
        elif norm == "linf":  # variables (d, t): min t, -t <= d <= t
            res = so.linprog(np.r_[np.zeros(d), 1.0], A_ub=np.r_[np.c_[eye, -one], np.c_[-eye, -one]],
                             b_ub=np.zeros(2 * d), A_eq=np.r_[wi, 0.0][None], b_eq=[ri],
                             bounds=[*zip(lo, hi, strict=True), (0, None)])
            ok, best = res.status == 0, float(res.fun) if res.status == 0 else 0.0
        else:  # variables (d, s): min sum s, -s <= d <= s
            res = so.linprog(np.r_[np.zeros(d), np.ones(d)], A_ub=np.r_[np.c_[eye, -eye], np.c_[-eye, -eye]],
                             b_ub=np.zeros(2 * d), A_eq=np.r_[wi, np.zeros(d)][None], b_eq=[ri],
                             bounds=[*zip(lo, hi, strict=True)] + [(0, None)] * d)
            ok, best = res.status == 0, float(res.fun) if res.status == 0 else 0.0
        if not ok:  # the box cannot reach the plane
            continue
        checked += 1
        assert float((w[i] * dd[i]).sum()) == pytest.approx(ri, abs=1e-9)
        ours = float({"linf": dd[i].abs().max(), "l2": dd[i].norm(), "l1": dd[i].abs().sum()}[norm])
        assert ours == pytest.approx(best, rel=1e-6, abs=1e-9)
    assert checked >= 30


@pytest.mark.parametrize("norm", NORMS)
def test_projection_when_the_box_cannot_reach_the_plane(norm):  # type: ignore[no-untyped-def]
    p = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    w = torch.tensor([[1.0, 0.0, -2.0, 0.0]])  # zero coordinates are of no use and stay put
    far = project_hyperplane_box(p, w, torch.tensor([10.0]), 0.0, 1.0, norm)
    assert torch.equal(far, torch.tensor([[0.5, 0.0, -0.5, 0.0]]))  # the box corner closest to the plane
    near = project_hyperplane_box(p, w, torch.tensor([-0.3]), 0.0, 1.0, norm)
    assert float((w * near).sum()) == pytest.approx(-0.3)
    assert bool(torch.isfinite(near).all()) and near[0, 1] == 0 and near[0, 3] == 0


# ----------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("search_steps", [0, 3])
@pytest.mark.parametrize("norm", NORMS)
def test_binary_linear_model_minimal_distance_is_the_hyperplane_distance(norm, search_steps):  # type: ignore[no-untyped-def]
    model, w, b = affine(16, 2, seed=1)
    x = inputs(12)
    y = model(x).argmax(1)
    wd, bd = w[1] - w[0], b[1] - b[0]
    exact = (x.flatten(1) @ wd + bd).abs() / dual(wd, norm)  # |w.x + b| / ||w||_*
    r = FAB(search_steps=search_steps)(model, x, y, threat=ThreatModel(norm, 0.1, WIDE))
    assert bool(r.success.all())
    ratio = r.distance / exact
    assert bool((ratio >= 1 - 1e-4).all()) and bool((ratio <= 1.02).all()), ratio
    assert torch.equal(r.info["norm"], r.distance)


@pytest.mark.parametrize("norm", NORMS)
def test_multiclass_linear_model_minimal_distance_is_the_closest_boundary(norm):  # type: ignore[no-untyped-def]
    model, w, b = affine(16, 5, seed=2)
    x = inputs(12, seed=1)
    y = model(x).argmax(1)
    exact = closest_boundary(x, w, b, y, norm)
    r = FAB(steps=50)(model, x, y, threat=ThreatModel(norm, 0.1, WIDE))
    assert bool(r.success.all())
    ratio = r.distance / exact
    assert bool((ratio >= 1 - 1e-4).all()) and bool((ratio <= 1.02).all()), ratio
    assert bool((r.passes == 50 * 4).all())  # one backward per non-label class and step


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_closest_class_is_measured_in_the_threat_models_norm(norm):  # type: ignore[no-untyped-def]
    # class 1: dense w (||w||_2 = 1, ||w||_1 = 4), gap 1.2; class 2: one-hot w (both norms 1), gap 1.0.
    # In L2 class 2 is closer (1.0 < 1.2); in Linf class 1 is (1.2 / 4 = 0.3 < 1.0).
    d = 16
    lin = nn.Linear(d, 3)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[1] = 0.25
        lin.weight[2, 0] = 1.0
        lin.bias.copy_(torch.tensor([1.2 + 2.0, 0.0, 1.2 + 2.0 - 1.0 - 0.5]))  # at x = 0.5: gaps 1.2 and 1.0
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = torch.full((2, 1, 4, 4), 0.5)
    y = torch.zeros(2, dtype=torch.long)
    exact = closest_boundary(x, lin.weight.detach(), lin.bias.detach(), y, norm)
    assert exact.tolist() == pytest.approx([0.3, 0.3] if norm == "linf" else [1.0, 1.0])
    r = FAB(steps=30)(model, x, y, threat=ThreatModel(norm, 0.1, WIDE))
    assert bool(r.success.all())
    assert bool(((r.distance / exact - 1).abs() <= 0.02).all()), r.distance


def test_restarts_never_lose_the_smallest_perturbation():
    model = mlp(2)
    x = torch.rand(24, 1, 4, 4, generator=torch.Generator().manual_seed(9))
    y = model(x).argmax(1)
    threat = ThreatModel("l2", 1.0)
    one = FAB(steps=15, search_steps=0)(model, x, y, threat=threat,
                                        generator=torch.Generator().manual_seed(1))
    four = FAB(steps=15, restarts=4, search_steps=0)(model, x, y, threat=threat,
                                                     generator=torch.Generator().manual_seed(1))
    assert bool(four.success.all())
    # the first run is the same, then the best is kept
    assert bool((four.distance <= one.distance + 1e-6).all())
    assert bool((four.distance < one.distance - 1e-4).any())  # and the random restarts find smaller ones


def _two_class_world(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """4 classes, but only the label 0 and the target 1 compete: classes 2 and 3 sit 100 logits below."""
    x = inputs(10, seed=seed)
    _, w, _ = affine(16, 4, seed=seed)
    lead = float((x.flatten(1) @ (w[1] - w[0])).max()) + 0.5  # class 0 wins every input by >= 0.5
    model, w, b = affine(16, 4, seed=seed, bias=torch.tensor([lead, 0.0, -100.0, -100.0]))
    assert bool((model(x).argmax(1) == 0).all())
    return model, x, w, b, torch.ones(len(x), dtype=torch.long)


@pytest.mark.parametrize("norm", NORMS)
def test_fab_t_reaches_the_target_at_the_exact_hyperplane_distance(norm):  # type: ignore[no-untyped-def]
    model, x, w, b, t = _two_class_world(seed=4)
    wd, bd = w[1] - w[0], b[1] - b[0]
    exact = (x.flatten(1) @ wd + bd).abs() / dual(wd, norm)
    threat = ThreatModel(norm, 0.1, WIDE)
    targeted = FABT()(model, x, TargetedMisclassification(t), threat=threat)
    assert bool(targeted.success.all())
    assert torch.equal(model(targeted.x_adv).argmax(1), t)
    untargeted = FABT(n_target_classes=1)(model, x, torch.zeros_like(t), threat=threat)
    assert torch.equal(untargeted.info["target"], t)
    for r in (targeted, untargeted):
        ratio = r.distance / exact
        assert bool((ratio >= 1 - 1e-4).all()) and bool((ratio <= 1.02).all()), ratio
        assert bool((r.passes == 100).all())  # one backward per step


# ----------------------------------------------------------------------------- real success, bounds


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 5)).eval()


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("attack", [FAB(steps=30, restarts=2),
                                    FABT(steps=30, restarts=2, n_target_classes=3)])
def test_success_is_real_and_inside_the_box(norm, attack):  # type: ignore[no-untyped-def]
    model = mlp(0)
    x = torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    y = model(x).argmax(1)  # every sample must be attacked
    y[:2] = (y[:2] + 1) % 5  # but two are misclassified already
    x_before, params = x.clone(), copy.deepcopy(model.state_dict())
    threat = ThreatModel(norm, 0.3)
    r = attack(model, x, y, threat=threat, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = model(r.x_adv).argmax(1)
    assert torch.equal(r.success, pred != y)
    assert r.success_rate >= 0.9
    assert bool((r.x_adv >= 0).all() and (r.x_adv <= 1).all())
    assert torch.allclose(r.distance, threat.strategy.distance(r.x_adv, x))
    assert torch.equal(r.info["norm"][r.success], r.distance[r.success])
    assert bool(torch.isinf(r.info["norm"][~r.success]).all())
    assert torch.equal(r.x_adv[~r.success], x[~r.success])
    assert bool((r.distance[:2] == 0).all()) and bool((r.distance[2:] > 0).all())
    assert torch.equal(x, x_before)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    again = attack(model, x, y, threat=threat, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.x_adv, r.x_adv)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_smaller_than_deepfool_on_an_mlp(norm):  # type: ignore[no-untyped-def]
    model = mlp(0)
    x = torch.rand(32, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    y = model(x).argmax(1)
    threat = ThreatModel(norm, 0.3)
    fab = FAB(steps=30)(model, x, y, threat=threat)
    deepfool = DeepFool()(model, x, y, threat=threat)
    assert bool(fab.success.all()) and bool(deepfool.success.all())
    assert float(fab.distance.mean()) < float(deepfool.distance.mean())


@pytest.mark.parametrize("norm", NORMS)
def test_targeted_success_is_real(norm):  # type: ignore[no-untyped-def]
    model = mlp(1)
    x = torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(7))
    t = torch.randint(0, 5, (12,), generator=torch.Generator().manual_seed(8))
    crit = TargetedMisclassification(t)
    r = FAB(steps=40)(model, x, crit, threat=ThreatModel(norm, 0.3))
    with torch.no_grad():
        pred = model(r.x_adv).argmax(1)
    assert torch.equal(r.success, pred == t)
    assert r.success_rate >= 0.75
    assert bool((r.x_adv >= 0).all() and (r.x_adv <= 1).all())


def test_already_misclassified_inputs_come_back_unchanged():
    model, w, b = affine(16, 3, seed=9)
    x = inputs(6)
    wrong = (model(x).argmax(1) + 1) % 3
    r = FAB(steps=5)(model, x, Misclassification(wrong), threat=ThreatModel("l2", 0.1, WIDE))
    assert bool(r.success.all())
    assert torch.equal(r.x_adv, x) and r.x_adv is not x
    assert bool((r.distance == 0).all()) and bool((r.passes == 0).all())


# ----------------------------------------------------------------------------- FAB-T's target loop


def test_fab_t_attacks_later_targets_only_on_unbroken_samples():
    # label 0 (f0 = 0); class 1 (f1 = 2 x_0 - 2.2) can never win inside [0, 1];
    # class 2 (f2 = 4 x_1 - 3.5) wins where x_1 > 0.875
    lin = nn.Linear(2, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]))
        lin.bias.copy_(torch.tensor([0.0, -2.2, -3.5]))
    model = lin.eval()
    x = torch.tensor([[0.5, 0.5],    # targets by clean logit: 1 (unreachable), then 2
                      [0.5, 0.8]])   # targets by clean logit: 2 (reachable), then 1
    y = torch.zeros(2, dtype=torch.long)
    steps = 20
    for norm in NORMS:
        r = FABT(steps=steps, n_target_classes=2)(model, x, y, threat=ThreatModel(norm, 0.1))
        assert bool(r.success.all())
        assert r.info["target"].tolist() == [2, 2]
        # the first sample paid for both targets, the second (broken by its first) for one only
        assert r.passes.tolist() == [2 * steps, steps]
        expected = torch.tensor([0.375, 0.075])  # distance to x_1 = 0.875 along one coordinate
        assert bool(((r.distance / expected - 1).abs() <= 0.02).all()), r.distance


def test_fab_t_goes_on_to_the_next_target_while_the_best_lies_outside_eps():
    # AutoAttack's FAB-T: the first target's boundary (x_0 = 0.75) is 0.3 away, outside
    # eps 0.2; the second's (x_1 = 0.875) is 0.175 away, inside. Stopping at the first
    # adversarial found would leave the sample robust at eps 0.2.
    lin = nn.Linear(2, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]]))
        lin.bias.copy_(torch.tensor([0.0, -1.5, -3.5]))
    x = torch.tensor([[0.45, 0.7]])  # clean logits: f1 = -0.6 > f2 = -0.7, so target 1 first
    y = torch.zeros(1, dtype=torch.long)
    steps = 20
    for norm in NORMS:
        r = FABT(steps=steps, n_target_classes=2)(lin.eval(), x, y, threat=ThreatModel(norm, 0.2))
        assert bool(r.success.all()) and r.info["target"].tolist() == [2]
        assert r.passes.tolist() == [2 * steps]
        assert abs(float(r.distance[0]) / 0.175 - 1) <= 0.02, r.distance
        # with eps above the first target's distance the second target is never tried
        r = FABT(steps=steps, n_target_classes=2)(lin.eval(), x, y, threat=ThreatModel(norm, 0.4))
        assert r.info["target"].tolist() == [1] and r.passes.tolist() == [steps]


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize("kwargs", [{"steps": 0}, {"restarts": 0}, {"alpha_max": 1.5}, {"eta": 0.9},
                                    {"beta": 0.0}, {"search_steps": -1}, {"n_target_classes": 0}])
def test_bad_settings_raise(kwargs):  # type: ignore[no-untyped-def]
    model = mlp(0)
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError):
        FABT(**kwargs)(model, x, torch.zeros(2, dtype=torch.long), threat=ThreatModel("l2", 0.1))


def test_non_numeric_setting_is_a_type_error():
    with pytest.raises(TypeError):
        FAB(eta="big")(mlp(0), torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long),  # type: ignore[arg-type]
                       threat=ThreatModel("l2", 0.1))


def test_settings_round_trip():
    assert FABT().settings() == {"attack": "FABT", "steps": 100, "restarts": 1, "alpha_max": 0.1, "eta": 1.05,
                                 "beta": 0.9, "search_steps": 3, "n_target_classes": 9}
    assert FAB.bounded is False and FABT.bounded is False


def test_negligible_weights_do_not_move_when_the_plane_is_out_of_reach():
    # w.d = 10 is out of reach in the box; the second coordinate's weight is 1e-9 of the
    # first's: it can add nothing, so moving it to its box limit would only add distance
    p = torch.tensor([[0.5, 0.5]])
    w = torch.tensor([[1.0, 1e-9]])
    for norm in NORMS:
        d = project_hyperplane_box(p, w, torch.tensor([10.0]), 0.0, 1.0, norm)
        assert d[0, 0] == pytest.approx(0.5) and float(d[0, 1]) == 0.0, (norm, d)

"""The attack contract (DESIGN.md): every attack, every norm, the same invariants."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from advlab.attacks import APGD, APGDT, BIM, EOT, FGSM, ILLC, MIFGSM, PGD, Square
from advlab.attacks.universal import UniversalAttack  # issue 6
from advlab.criteria import Misclassification, TargetedMisclassification
from advlab.threat import ThreatModel

NORMS = ["linf", "l2", "l1"]


def attacks():
    return {
        "fgsm": FGSM(),
        "bim": BIM(steps=5),
        "pgd": PGD(steps=5, random_init=True),
        "pgd-restarts": PGD(steps=3, restarts=3, random_init=True),
        "pgd-early-stop": PGD(steps=5, early_stop=True),
        "pgd-cw": PGD(steps=4, loss="cw"),
        "pgd-dlr": PGD(steps=4, loss="dlr"),
        "illc": ILLC(steps=4),
        "eot": EOT(samples=2, steps=3),
        "apgd": APGD(steps=5),
        "apgd-dlr-early-stop": APGD(steps=5, loss="dlr", early_stop=True, restarts=2),
        "apgd-t": APGDT(steps=3, n_target_classes=2),
        "square": Square(queries=20),
        "universal": UniversalAttack(max_passes=2, batch_size=2),
        "mifgsm": MIFGSM(steps=4),
    }


ATTACK_NAMES = list(attacks())


def tiny_model(in_shape: tuple[int, ...], classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    d = 1
    for s in in_shape:
        d *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, classes))


def linear_model(in_shape: tuple[int, ...], classes: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    d = 1
    for s in in_shape:
        d *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(d, classes))


cases = st.fixed_dictionaries(
    {
        "n": st.integers(1, 6),
        "shape": st.sampled_from([(1, 4, 4), (3, 2, 3), (1, 1, 7)]),
        "classes": st.integers(2, 5),
        "eps": st.floats(0.0, 0.6),
        "bounds": st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)]),
        "seed": st.integers(0, 2**16),
    }
)

SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def make_case(c):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(c["seed"])
    lo, hi = c["bounds"]
    x = lo + (hi - lo) * torch.rand((c["n"], *c["shape"]), generator=g)
    y = torch.randint(0, c["classes"], (c["n"],), generator=g)
    model = tiny_model(c["shape"], c["classes"], c["seed"])
    model.eval()
    eps = c["eps"] * (hi - lo)
    return model, x, y, eps


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ATTACK_NAMES)
@SETTINGS
@given(c=cases)
def test_within_ball_and_bounds(name, norm, c):  # type: ignore[no-untyped-def]
    model, x, y, eps = make_case(c)
    if norm == "l2":
        eps *= 2
    if norm == "l1":
        eps *= 6
    threat = ThreatModel(norm, eps, c["bounds"])
    r = attacks()[name](model, x, y, threat=threat, generator=torch.Generator().manual_seed(1))
    assert r.x_adv.shape == x.shape and r.x_adv.dtype == x.dtype
    assert bool(threat.contains(r.x_adv, x).all())
    assert torch.allclose(r.distance, threat.strategy.distance(r.x_adv, x))
    # the reported success matches the model's prediction at x_adv
    with torch.no_grad():
        pred = model(r.x_adv).argmax(1)
    assert torch.equal(r.success, pred != y)
    assert bool((r.passes + r.forwards >= 1).all())  # score-based attacks only query


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_eps_zero_returns_equal_not_aliased(name, norm):  # type: ignore[no-untyped-def]
    model, x, y, _ = make_case({"n": 4, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 3})
    r = attacks()[name](model, x, y, threat=ThreatModel(norm, 0.0))
    assert torch.equal(r.x_adv, x)
    assert r.x_adv.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_same_generator_seed_same_output(name, norm):  # type: ignore[no-untyped-def]
    model, x, y, _ = make_case({"n": 5, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 4})
    threat = ThreatModel(norm, {"linf": 0.1, "l2": 0.5, "l1": 2.0}[norm])
    a = attacks()[name](model, x, y, threat=threat, generator=torch.Generator().manual_seed(7))
    b = attacks()[name](model, x, y, threat=threat, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.x_adv, b.x_adv)
    assert torch.equal(a.passes, b.passes)


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_no_side_effects(name):  # type: ignore[no-untyped-def]
    model, x, y, _ = make_case({"n": 5, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 5})
    x_copy, y_copy = x.clone(), y.clone()
    params = copy.deepcopy(model.state_dict())
    rng_before = torch.get_rng_state()
    model.eval()
    attacks()[name](model, x, y, threat=ThreatModel("linf", 0.2),
                    generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng_before)  # global RNG untouched
    # train mode: warned, run in eval mode, restored
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        attacks()[name](model, x, y, threat=ThreatModel("linf", 0.2),
                        generator=torch.Generator().manual_seed(0))
    assert model.training


@pytest.mark.parametrize("norm", NORMS)
def test_fgsm_on_linear_model_moves_along_sign_of_w(norm):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    d = 16
    w = torch.randn(d)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([-w / 2, w / 2]))
        model[1].bias.zero_()
    x = torch.full((3, 1, 4, 4), 0.5)
    y = torch.ones(3, dtype=torch.long)  # class 1: the loss grows along -w
    eps = 0.1
    r = FGSM()(model, x, y, threat=ThreatModel(norm, eps))
    delta = (r.x_adv - x).flatten(1)
    if norm == "linf":
        expected = -eps * w.sign()
        assert torch.allclose(delta, expected.expand_as(delta), atol=1e-6)
    elif norm == "l2":
        expected = -eps * w / w.norm()
        assert torch.allclose(delta, expected.expand_as(delta), atol=1e-6)
    else:  # l1: all mass on the largest |w| coordinate(s)
        k = int(w.abs().argmax())
        assert torch.allclose(delta[:, k], torch.full((3,), -eps * float(w[k].sign())), atol=1e-6)
        assert torch.allclose(delta.abs().sum(1), torch.full((3,), eps), atol=1e-6)


def reference_pgd(model, x, y, eps, step, steps):  # type: ignore[no-untyped-def]
    """A plain Linf PGD loop without random start (the budget reference)."""
    xa = x.clone()
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(xa), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, xa)
        xa = torch.min(torch.max(xa.detach() + step * g.sign(), x - eps), x + eps).clamp(0, 1)
    return xa


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.01, 0.3), steps=st.integers(1, 8))
def test_never_weaker_than_plain_loop(seed, eps, steps):  # type: ignore[no-untyped-def]
    model, x, y, _ = make_case({"n": 6, "shape": (1, 4, 4), "classes": 4, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": seed})
    step = 2.5 * eps / steps
    ref = reference_pgd(model, x, y, eps, step, steps)
    with torch.no_grad():
        ref_loss = nn.functional.cross_entropy(model(ref), y, reduction="none")
        ref_succ = model(ref).argmax(1) != y
    for atk in (BIM(steps=steps, step_size=step),
                PGD(steps=steps, step_size=step, random_init=False, early_stop=True)):
        r = atk(model, x, y, threat=ThreatModel("linf", eps))
        with torch.no_grad():
            loss = nn.functional.cross_entropy(model(r.x_adv), y, reduction="none")
        assert bool((r.success | ~ref_succ).all()), "a sample broken by the plain loop was missed"
        if isinstance(atk, BIM):
            assert bool((r.success | (loss >= ref_loss - 1e-5)).all())
        assert int(r.passes.max()) <= steps


def test_early_stop_same_success_less_work():
    model, x, y, _ = make_case({"n": 64, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 11})
    threat = ThreatModel("linf", 0.3)
    full = BIM(steps=10)(model, x, y, threat=threat)
    early = BIM(steps=10, early_stop=True)(model, x, y, threat=threat)
    assert torch.equal(full.success, early.success)
    assert int(early.passes.sum()) < int(full.passes.sum())


def test_restarts_only_attack_unbroken_samples():
    model, x, y, _ = make_case({"n": 32, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 12})
    threat = ThreatModel("linf", 0.05)
    r = PGD(steps=4, restarts=3)(model, x, y, threat=threat,
                                 generator=torch.Generator().manual_seed(0))
    one = PGD(steps=4, restarts=1)(model, x, y, threat=threat,
                                   generator=torch.Generator().manual_seed(0))
    assert bool((r.success | ~one.success).all())  # restarts never lose a success
    broken_first = one.success
    assert bool((r.passes[broken_first] == 4).all())  # not attacked again
    assert bool((r.passes[~r.success] == 12).all())


def test_targeted_reaches_every_class_on_linear_model():
    model = linear_model((1, 4, 4), 4, 0)
    x = torch.full((4, 1, 4, 4), 0.5)
    targets = torch.arange(4)
    r = PGD(steps=30, random_init=False)(model, x, TargetedMisclassification(targets),
                                         threat=ThreatModel("linf", 1.0))
    assert bool(r.success.all())
    assert torch.equal(r.logits.argmax(1), targets)


def test_batching_gives_same_answer():
    model, x, y, _ = make_case({"n": 10, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 13})
    threat = ThreatModel("l2", 0.5)
    a = BIM(steps=5)(model, x, y, threat=threat)
    b = BIM(steps=5)(model, x, y, threat=threat, batch_size=3)
    assert torch.allclose(a.x_adv, b.x_adv, atol=1e-6)
    assert torch.equal(a.success, b.success)


@pytest.mark.parametrize("bad,err", [
    (lambda x, y: (x.double().numpy(), y), TypeError),
    (lambda x, y: ((x * 255).to(torch.uint8), y), TypeError),
    (lambda x, y: (x + 2, y), ValueError),
    (lambda x, y: (x.clone().fill_(float("nan")), y), ValueError),
    (lambda x, y: (x, y[:2]), ValueError),
    (lambda x, y: (x, y.float()), TypeError),
    (lambda x, y: (x, y + 10), ValueError),
])
def test_bad_input_is_rejected(bad, err):  # type: ignore[no-untyped-def]
    model, x, y, _ = make_case({"n": 4, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 14})
    bx, by = bad(x, y)
    with pytest.raises(err):
        PGD(steps=2)(model, bx, Misclassification(by) if isinstance(by, torch.Tensor) and not
                     by.dtype.is_floating_point else by, threat=ThreatModel("linf", 0.1))


def test_probability_outputs_are_rejected():
    model = nn.Sequential(tiny_model((1, 4, 4), 3, 0), nn.Softmax(dim=1))
    x = torch.rand(4, 1, 4, 4)
    with pytest.raises(ValueError, match="probabilities"):
        FGSM()(model, x, torch.zeros(4, dtype=torch.long), threat=ThreatModel("linf", 0.1))


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf")])
def test_bad_eps(eps):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="eps"):
        ThreatModel("linf", eps)


def test_bad_settings():
    model, x, y, _ = make_case({"n": 2, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 1})
    for atk in (PGD(steps=0), PGD(restarts=0), PGD(loss="nope"), PGD(step_size=-1.0)):
        with pytest.raises(ValueError):
            atk(model, x, y, threat=ThreatModel("linf", 0.1))

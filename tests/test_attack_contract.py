"""The attack contract (DESIGN.md): every attack, every norm, the same invariants."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from advlab.attacks import BIM, EOT, FGSM, ILLC, MIFGSM, PGD, canonical_names, create_attack
from advlab.attacks.apgd import apgd_checkpoints
from advlab.criteria import Misclassification, TargetedMisclassification
from advlab.threat import ThreatModel
from advlab.transforms import Identity

NORMS = ["linf", "l2", "l1", "l0"]
#: the norms of the continuous (gradient-step) threat models
BALL_NORMS = ["linf", "l2", "l1"]


#: the small-budget configuration of every registered attack the contract runs (by canonical name)
CONTRACT: dict[str, dict[str, object]] = {
    "fgsm": {}, "bim": {"steps": 5}, "pgd": {"steps": 5, "random_init": True},
    "mifgsm": {"steps": 4}, "apgd": {"steps": 5}, "apgd-dlr": {"steps": 5},
    "apgd-t": {"steps": 3, "n_target_classes": 2}, "apgd-t3": {"steps": 3},
    "square": {"queries": 20}, "square1k": {}, "square2k": {},  # variants fix their queries
    "cw": {"steps": 10, "binary_search_steps": 2}, "deepfool": {"steps": 5}, "ddn": {"steps": 10},
    "fmn": {"steps": 10}, "fab": {"steps": 10}, "fab-t": {"steps": 10, "n_target_classes": 2},
    "fab-t3": {"steps": 10},
    "illc": {"steps": 4}, "eot": {"samples": 2, "steps": 3},
    "universal": {"max_passes": 2, "batch_size": 2},
    "jsma-add": {"per_step": 2},
}

#: more configurations of the same classes (options the defaults do not exercise)
VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "pgd-restarts": ("pgd", {"steps": 3, "restarts": 3, "random_init": True}),
    "pgd-early-stop": ("pgd", {"steps": 5, "early_stop": True}),
    "pgd-cw": ("pgd", {"steps": 4, "loss": "cw"}),
    "pgd-dlr": ("pgd", {"steps": 4, "loss": "dlr"}),
    "apgd-dlr-early-stop": ("apgd-dlr", {"steps": 5, "early_stop": True, "restarts": 2}),
    "mifgsm-best-early-stop": ("mifgsm", {"steps": 4, "select": "best", "early_stop": True}),
    "eot-digital-cosine": ("eot", {"samples": 2, "steps": 3, "select": "digital_first",
                                   "schedule": "cosine", "random_init": True}),
}

#: invariants an attack cannot meet, with the reason (checked: every key is a registered name)
EXEMPT: dict[tuple[str, str], str] = {
    ("cw", "within_ball"): "unbounded minimum-norm attack: ignores eps (checked: inside the box)",
    ("deepfool", "within_ball"): "unbounded minimum-norm attack: ignores eps (checked: inside the box)",
    ("cw", "eps_zero"): "unbounded: eps = 0 does not restrict it",
    ("deepfool", "eps_zero"): "unbounded: eps = 0 does not restrict it",
    ("deepfool", "l1"): "DeepFool is defined for the l2 and linf norms (l1 is rejected)",
    ("ddn", "within_ball"): "unbounded minimum-norm attack: ignores eps (checked: inside the box)",
    ("ddn", "eps_zero"): "unbounded: eps = 0 does not restrict it",
    ("ddn", "linf"): "DDN is an L2 attack (linf is rejected)",
    ("ddn", "l1"): "DDN is an L2 attack (l1 is rejected)",
    **{(n, "within_ball"): "unbounded minimum-norm attack: ignores eps (checked: inside the box)"
       for n in ("fmn", "fab", "fab-t", "fab-t3")},
    **{(n, "eps_zero"): "unbounded: eps = 0 does not restrict it (FAB: only the restart radius)"
       for n in ("fmn", "fab", "fab-t", "fab-t3")},
    **{(n, "l0"): "an L0 budget is the threat model of discrete feature attacks (refused: "
                  "test_an_attack_refuses_the_norms_it_does_not_take)"
       for n in canonical_names() if n != "jsma-add"},
    **{("jsma-add", n): "add-only feature attack: it takes an L0 budget only" for n in BALL_NORMS},
}


def attacks():
    out = {name: create_attack(name, **kw) for name, kw in CONTRACT.items()}
    out.update({v: create_attack(name, **kw) for v, (name, kw) in VARIANTS.items()})
    return out


def registered(name: str) -> str:
    return VARIANTS[name][0] if name in VARIANTS else name


def exempt(name: str, what: str) -> bool:
    return (registered(name), what) in EXEMPT


def a_norm(name: str) -> str:
    """Linf, or the first norm the attack supports."""
    return next(n for n in NORMS if not exempt(name, n))


def a_threat(name: str) -> ThreatModel:
    """A small threat model of the attack's first norm (3 features for an L0 budget)."""
    norm = a_norm(name)
    return ThreatModel(norm, 3.0 if norm == "l0" else 0.2)


ATTACK_NAMES = list(attacks())


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_an_attack_refuses_the_norms_it_does_not_take(name):  # type: ignore[no-untyped-def]
    model, x, y, _ = make_case({"n": 3, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 2})
    atk = attacks()[name]
    for norm in NORMS:
        if norm not in atk.norms:
            with pytest.raises(ValueError, match=f"does not take the {norm} threat model"):
                atk(model, x, y, threat=ThreatModel(norm, 1.0))


def test_every_registered_attack_joins_the_contract():
    assert set(CONTRACT) == set(canonical_names()), (
        "a registered attack must join the contract: add its small-budget settings to CONTRACT")
    assert {n for n, _ in EXEMPT} <= set(canonical_names())


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
    if exempt(name, norm):
        pytest.skip(EXEMPT[(registered(name), norm)])
    model, x, y, eps = make_case(c)
    if norm == "l2":
        eps *= 2
    if norm == "l1":
        eps *= 6
    if norm == "l0":  # a count of features
        eps = float(round(c["eps"] * 10))
    threat = ThreatModel(norm, eps, c["bounds"])
    r = attacks()[name](model, x, y, threat=threat, generator=torch.Generator().manual_seed(1))
    assert r.x_adv.shape == x.shape and r.x_adv.dtype == x.dtype
    lo, hi = c["bounds"]
    assert bool(((r.x_adv >= lo) & (r.x_adv <= hi)).all())
    if not exempt(name, "within_ball"):
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
    if exempt(name, norm) or exempt(name, "eps_zero"):
        pytest.skip(EXEMPT.get((registered(name), norm)) or EXEMPT[(registered(name), "eps_zero")])
    model, x, y, _ = make_case({"n": 4, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 3})
    r = attacks()[name](model, x, y, threat=ThreatModel(norm, 0.0))
    assert torch.equal(r.x_adv, x)
    assert r.x_adv.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_same_generator_seed_same_output(name, norm):  # type: ignore[no-untyped-def]
    if exempt(name, norm):
        pytest.skip(EXEMPT[(registered(name), norm)])
    model, x, y, _ = make_case({"n": 5, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 4})
    threat = ThreatModel(norm, {"linf": 0.1, "l2": 0.5, "l1": 2.0, "l0": 3.0}[norm])
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
    attacks()[name](model, x, y, threat=a_threat(name),
                    generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng_before)  # global RNG untouched
    # train mode: warned, run in eval mode, restored
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        attacks()[name](model, x, y, threat=a_threat(name),
                        generator=torch.Generator().manual_seed(0))
    assert model.training


@pytest.mark.parametrize("norm", BALL_NORMS)
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


# ----------------------------------------------------------------------------- never weaker
# Every iterative attack against an independent plain loop of the same algorithm and budget
# (Linf, no bookkeeping, last iterate): the attack must break every sample the plain loop
# breaks, and elsewhere reach at least the plain loop's objective (its best iterate includes
# the last one).

#: registered attacks that are not iterative gradient loops, with the reason
NOT_ITERATIVE = {
    "square": "random search without gradients (its own query budget)",
    "square1k": "random search without gradients (its own query budget)",
    "square2k": "random search without gradients (its own query budget)",
    "cw": "minimum-norm optimiser of a penalty, not a bounded ascent",
    "deepfool": "minimum-norm linearisation steps, not a bounded ascent",
    "ddn": "minimum-norm: the ball's radius adapts per sample, not a bounded ascent",
    "fmn": "minimum-norm: the ball's radius adapts per sample, not a bounded ascent",
    "fab": "minimum-norm linearisation and projection steps, not a bounded ascent",
    "fab-t": "minimum-norm linearisation and projection steps, not a bounded ascent",
    "fab-t3": "minimum-norm linearisation and projection steps, not a bounded ascent",
    "universal": "one perturbation fitted for the whole batch",
    "jsma-add": "greedy discrete feature additions under an L0 budget (known answers: tests/test_spam.py)",
}


def _ce(z, y):  # type: ignore[no-untyped-def]
    return nn.functional.cross_entropy(z, y, reduction="none")


def _dlr(z, y):  # type: ignore[no-untyped-def]
    srt, _ = z.sort(dim=1, descending=True)
    own = z.gather(1, y[:, None]).squeeze(1)
    other = z.masked_fill(nn.functional.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(1)
    return (other - own) / (srt[:, 0] - srt[:, 2] + 1e-12)


def _targeted_dlr(t):  # type: ignore[no-untyped-def]
    def f(z, y):  # type: ignore[no-untyped-def]
        srt, _ = z.sort(dim=1, descending=True)
        zy, zt = z.gather(1, y[:, None]).squeeze(1), z.gather(1, t[:, None]).squeeze(1)
        return -(zy - zt) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)
    return f


def _grad(model, xa, y, loss):  # type: ignore[no-untyped-def]
    xa = xa.detach().requires_grad_(True)
    obj = loss(model(xa), y)
    (g,) = torch.autograd.grad(obj.sum(), xa)
    return obj.detach(), g


def plain_sign_loop(model, x, y, eps, step, steps, loss, start=None, decay=None):  # type: ignore[no-untyped-def]
    """Sign-gradient ascent (FGSM/BIM/PGD; MI-FGSM's velocity when ``decay`` is given)."""
    xa = x.clone() if start is None else start.clone()
    g = torch.zeros_like(x)
    for _ in range(steps):
        _, grad = _grad(model, xa, y, loss)
        if decay is not None:
            g = decay * g + grad / grad.abs().sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            grad = g
        xa = torch.min(torch.max(xa + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return xa


def plain_apgd(model, x, y, eps, steps, loss, start):  # type: ignore[no-untyped-def]
    """Croce & Hein's APGD (Linf, one run), written out without per-sample bookkeeping."""
    def proj(z):  # type: ignore[no-untyped-def]
        return torch.min(torch.max(z, x - eps), x + eps).clamp(0, 1)
    xk = start.clone()
    lk, g = _grad(model, xk, y, loss)
    eta = torch.full((x.shape[0], 1, 1, 1), 2 * eps)
    x_best, l_best, g_best, x_prev = xk.clone(), lk.clone(), g.clone(), xk.clone()
    hist, l_best_cp, reduced, last = [lk], l_best.clone(), torch.ones(x.shape[0], dtype=torch.bool), 0
    cps = set(apgd_checkpoints(steps))
    for i in range(steps):
        a = 1.0 if i == 0 else 0.75
        z = proj(xk + eta * g.sign())
        x_prev, xk = xk, proj(xk + a * (z - xk) + (1 - a) * (xk - x_prev))
        lk, g = _grad(model, xk, y, loss)
        hist.append(lk)
        up = lk > l_best
        x_best[up], l_best[up], g_best[up] = xk[up], lk[up], g[up]
        if i + 1 in cps:
            h = torch.stack(hist[last:])
            halve = ((h[1:] > h[:-1]).sum(0) <= 0.75 * (i + 1 - last)) | (~reduced & (l_best_cp >= l_best))
            reduced, l_best_cp, last = halve, l_best.clone(), i + 1
            m = halve[:, None, None, None]
            eta = torch.where(m, eta / 2, eta)
            xk, g = torch.where(m, x_best, xk), torch.where(m, g_best, g)
    return xk


ITERATIVE = ["fgsm", "bim", "pgd", "mifgsm", "apgd", "apgd-dlr", "apgd-t", "apgd-t3", "illc", "eot"]


def test_every_registered_attack_is_iterative_or_says_why_not():
    assert set(ITERATIVE) | set(NOT_ITERATIVE) == set(canonical_names())
    assert not set(ITERATIVE) & set(NOT_ITERATIVE)


@pytest.mark.parametrize("name", ITERATIVE)
@pytest.mark.parametrize("seed", range(4))
def test_never_weaker_than_a_plain_loop_of_the_same_algorithm(name, seed):  # type: ignore[no-untyped-def]
    model, x, y, _ = make_case({"n": 12, "shape": (1, 4, 4), "classes": 5, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": seed})
    eps, steps = (0.05, 0.1, 0.2, 0.3)[seed], 6
    threat = ThreatModel("linf", eps)
    start = torch.clamp(x + threat.strategy.random_init(
        x.shape, eps, generator=torch.Generator().manual_seed(9), device=x.device, dtype=x.dtype), 0, 1)
    with torch.no_grad():
        clean = model(x)
    loss, crit, budget = _ce, y, steps
    if name == "fgsm":
        atk, ref = FGSM(), plain_sign_loop(model, x, y, eps, eps, 1, _ce)
        budget = 1
    elif name == "bim":
        atk, ref = BIM(steps=steps), plain_sign_loop(model, x, y, eps, 2.5 * eps / steps, steps, _ce)
    elif name == "pgd":
        atk = PGD(steps=steps, random_init=True)
        ref = plain_sign_loop(model, x, y, eps, 2.5 * eps / steps, steps, _ce, start=start)
    elif name == "mifgsm":
        atk = MIFGSM(steps=steps, select="best")
        ref = plain_sign_loop(model, x, y, eps, eps / steps, steps, _ce, decay=1.0)
    elif name == "illc":
        ll = clean.argmin(1)
        atk = ILLC(steps=steps)
        loss = lambda z, _y: -_ce(z, ll)  # noqa: E731 - toward the least-likely class
        ref = plain_sign_loop(model, x, y, eps, 2.5 * eps / steps, steps, loss)
    elif name == "eot":  # identity transform: EOT is PGD on the mean over identical copies
        atk = EOT(transform=Identity(), samples=2, steps=steps)
        ref = plain_sign_loop(model, x, y, eps, 2.5 * eps / steps, steps, _ce)
        budget = 2 * steps
    elif name in ("apgd", "apgd-dlr"):
        loss = _ce if name == "apgd" else _dlr
        atk = create_attack(name, steps=steps)
        ref = plain_apgd(model, x, y, eps, steps, loss, start)
        budget = steps + 1
    else:  # targeted APGD: its first run targets the most likely wrong class
        top = clean.masked_fill(nn.functional.one_hot(y, 5).bool(), float("-inf")).argmax(1)
        loss = _targeted_dlr(top)
        atk = create_attack(name, steps=steps, **({"n_target_classes": 2} if name == "apgd-t" else {}))
        ref = plain_apgd(model, x, y, eps, steps, loss, start)
        budget = (steps + 1) * atk.n_target_classes
    r = atk(model, x, crit, threat=threat, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ref_succ = model(ref).argmax(1) != y
        ref_obj, got_obj = loss(model(ref), y), loss(model(r.x_adv), y)
    assert bool((r.success | ~ref_succ).all()), "a sample broken by the plain loop was missed"
    if name not in ("apgd-t", "apgd-t3"):  # later target classes change the objective
        assert bool((r.success | (got_obj >= ref_obj - 1e-5)).all()), "lower objective than the plain loop"
    assert int(r.passes.max()) <= budget


@pytest.mark.parametrize("name,key", [("cw", "l2"), ("cw", "const"), ("illc", "targets"),
                                      ("eot", "expected_success"), ("ddn", "norm"), ("fmn", "norm"),
                                      ("fab", "norm")])
def test_per_sample_info_survives_batching(name, key):  # type: ignore[no-untyped-def]
    model, x, y, _ = make_case({"n": 7, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 21})
    atk = attacks()[name]
    threat = ThreatModel("l2" if name in ("cw", "ddn") else "linf", 0.3)
    whole = atk(model, x, y, threat=threat, generator=torch.Generator().manual_seed(2))
    parts = atk(model, x, y, threat=threat, generator=torch.Generator().manual_seed(2), batch_size=3)
    assert whole.info[key].shape[0] == 7 and parts.info[key].shape[0] == 7
    if name != "eot":  # EOT draws its transformations per batch: same shape, other draws
        assert torch.allclose(whole.info[key].float(), parts.info[key].float(), atol=1e-5)
    # scalar info is kept as is
    assert all(not isinstance(v, torch.Tensor) or v.ndim == 0 or v.shape[0] == 7
               for v in parts.info.values())


# ----------------------------------------------------------------------------- outside the registry
# Attacks with another call shape (a scikit-learn tree; a fitted black-box substitute) meet
# the same invariants.


def _tree_and_substitute():  # type: ignore[no-untyped-def]
    from sklearn.tree import DecisionTreeClassifier

    from advlab.attacks.substitute import SubstituteAttack

    model, x, y, _ = make_case({"n": 16, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 31})
    labels = y
    assert len(set(labels.tolist())) == 3
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(x.flatten(1).numpy(), labels.numpy())
    sub = SubstituteAttack(substitute_epochs=2, train_epochs=2, batch_size=8)
    sub.fit(model, x[:8], tiny_model((1, 4, 4), 3, 1), generator=torch.Generator().manual_seed(0))
    return tree, sub, x, labels


@pytest.mark.parametrize("norm", BALL_NORMS)
@pytest.mark.parametrize("which", ["tree", "substitute-craft"])
def test_tree_and_substitute_attacks_meet_the_contract(which, norm):  # type: ignore[no-untyped-def]
    from advlab.attacks.tree import DecisionTreeAttack

    tree, sub, x, y = _tree_and_substitute()
    eps = {"linf": 0.3, "l2": 1.0, "l1": 3.0}[norm]

    def run(e: float, seed: int = 0):  # type: ignore[no-untyped-def]
        threat = ThreatModel(norm, e)
        if which == "tree":
            return DecisionTreeAttack()(tree, x, y, threat=threat)
        return sub.craft(x, threat, labels=y, attack=PGD(steps=3),
                         generator=torch.Generator().manual_seed(seed))

    x_copy, rng = x.clone(), torch.get_rng_state()
    r = run(eps)
    assert torch.equal(x, x_copy) and torch.equal(torch.get_rng_state(), rng)
    assert bool(ThreatModel(norm, eps).contains(r.x_adv, x).all())
    assert bool(((r.x_adv >= 0) & (r.x_adv <= 1)).all())
    zero = run(0.0)
    assert torch.equal(zero.x_adv, x) and zero.x_adv.data_ptr() != x.data_ptr()
    assert torch.equal(run(eps, seed=5).x_adv, run(eps, seed=5).x_adv)
    if which == "tree":  # the reported success is the tree's verdict at x_adv
        pred = torch.as_tensor(tree.predict(r.x_adv.flatten(1).numpy()))
        assert torch.equal(r.success, pred != y)
    else:  # ... and the substitute's
        with torch.no_grad():
            assert torch.equal(r.success, sub.attack_model_(r.x_adv).argmax(1) != y)


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_no_generator_means_a_private_seeded_one_never_the_global_rng(name):  # type: ignore[no-untyped-def]
    model, x, y, _ = make_case({"n": 5, "shape": (1, 4, 4), "classes": 3, "eps": 0,
                                "bounds": (0.0, 1.0), "seed": 6})
    threat = a_threat(name)
    rng = torch.get_rng_state()
    a = attacks()[name](model, x, y, threat=threat)
    torch.manual_seed(12345)  # whatever the global state, the answer is the same
    b = attacks()[name](model, x, y, threat=threat)
    torch.set_rng_state(rng)
    assert torch.equal(a.x_adv, b.x_adv)
    c = attacks()[name](model, x, y, threat=threat)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a.x_adv, c.x_adv)


def test_nan_outputs_are_not_successes():
    from advlab.criteria import Misclassification, TargetedMisclassification

    logits = torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [0.0, float("inf")]])
    assert Misclassification(torch.tensor([0, 1, 1])).is_success(logits).tolist() == [True, False, False]
    assert TargetedMisclassification(torch.tensor([1, 0, 1])).is_success(logits).tolist() == \
        [True, False, False]

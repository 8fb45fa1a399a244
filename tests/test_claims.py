"""The lecture's remaining claims (advlab.analysis.claims): X's and O's, linear vs deep
adversarial training, where to perturb. Known answers on tiny models, then the sections."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.analysis import claims as cl
from advlab.defenses import FGSMTraining
from advlab.models.zoo import LogisticRegression
from advlab.reporting.html import render_report
from advlab.reporting.lecture import LectureContext, run_sections


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- the toy


def test_toy_is_a_c_of_os_and_a_line_of_xs_and_is_seeded() -> None:
    x, y = cl.xs_and_os_toy(n_o=40, n_x=20, noise=0.0, generator=_gen())
    assert x.shape == (60, 2) and y.tolist() == [0] * 40 + [1] * 20
    r = x[:40].norm(dim=1)
    assert torch.allclose(r, torch.ones(40), atol=1e-5)  # O's on the unit circle
    assert (x[:40, 0] <= 0.5 + 1e-6).all()  # the C is open to the right (angles 60..300 deg)
    assert torch.allclose(x[40:, 0], torch.full((20,), 1.3))  # X's on the line x1 = 1.3
    a, _ = cl.xs_and_os_toy(generator=_gen(3))
    b, _ = cl.xs_and_os_toy(generator=_gen(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="n_o and n_x"):
        cl.xs_and_os_toy(n_o=1)
    with pytest.raises(ValueError, match="noise"):
        cl.xs_and_os_toy(noise=-1.0)


def _linear(w: tuple[float, float], b: float) -> nn.Linear:
    """Two logits whose difference is ``w.x + b`` (class 1 where positive)."""
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[0.0, 0.0], list(w)]))
        m.bias.copy_(torch.tensor([0.0, b]))
    return m


def test_one_offset_flips_exactly_the_points_closer_than_eps_on_a_linear_model() -> None:
    # boundary x1 = 0; points at x1 = -0.9 .. 0.9 (0.1 apart); label by side
    x1 = torch.linspace(-0.95, 0.95, 20)
    x = torch.stack([x1, torch.zeros(20)], 1)
    y = (x1 > 0).long()
    m = _linear((1.0, 0.0), 0.0)
    res = cl.offset_flips(m, x, y, eps=0.5)
    expected = (x1.abs() < 0.5)
    assert torch.equal(res.flipped, expected)
    assert res.share == pytest.approx(float(expected.float().mean()))
    # the offsets are +-eps along the boundary normal, the same for every point of a class
    assert torch.allclose(res.offsets, torch.tensor([[0.5, 0.0], [-0.5, 0.0]]), atol=1e-6)
    # for a linear model a per-point step is the same thing
    share, moved = cl.per_point_flips(m, x, y, eps=0.5)
    assert share == pytest.approx(res.share) and torch.allclose(moved, res.moved, atol=1e-6)
    assert cl.offset_flips(m, x, y, eps=0.0).share == 0.0
    with pytest.raises(ValueError, match="eps"):
        cl.offset_flips(m, x, y, eps=-1.0)


def test_agreement_of_a_model_with_itself_is_one_and_with_its_mirror_zero_off_the_data() -> None:
    x = torch.zeros(1, 2)
    m, mirror = _linear((1.0, 0.3), 0.1), _linear((-1.0, -0.3), -0.1)
    assert cl.off_data_agreement(m, m, x, resolution=31)["far"] == 1.0
    ag = cl.off_data_agreement(m, mirror, x, resolution=31)
    assert ag["far"] == 0.0 and 0 < ag["far_share"] < 1


def test_linear_corner_confidence_goes_to_one() -> None:
    m = _linear((1.0, 2.0), 0.0)
    c2, c20 = cl.corner_confidence(m, 2.0), cl.corner_confidence(m, 20.0)
    assert c2.shape == (4,) and (c20 >= c2).all() and (c20 > 0.999).all()


def test_xs_and_os_on_a_small_budget_measures_both_stories() -> None:
    r = cl.xs_and_os(width=32, steps=150, resolution=31, sweep_eps=(0.3, 0.9), generator=_gen())
    d = r.to_dict()
    assert set(r.models) == {"deep A", "deep B", "linear"}
    assert all(a >= 0.95 for a in r.train_acc.values())  # every fit separates the toy
    # linear: the shared offset is the per-point step
    assert r.offsets["linear"].share == pytest.approx(r.per_point["linear"])
    # shares grow with the budget
    for k in r.models:
        assert r.sweep[0.3][k][0] <= r.sweep[0.9][k][0]
    assert [row["model"] for row in d["rows"]] == ["deep A", "deep B", "linear"]
    again = cl.xs_and_os(width=32, steps=150, resolution=31, sweep_eps=(0.3, 0.9), generator=_gen())
    assert again.to_dict() == d  # seeded: same generator, same numbers


# ----------------------------------------------------------------------------- linear vs deep AT


def test_logistic_fgsm_loss_is_softplus_of_eps_l1_minus_margin() -> None:
    torch.manual_seed(0)  # test data only
    model = LogisticRegression(in_shape=(1, 2, 3), mean=0.5, std=0.3)
    x, y = torch.rand(16, 1, 2, 3), torch.randint(0, 2, (16,))
    eps = 0.1
    closed = cl.logistic_adversarial_loss(model, x, y, eps)
    # the same loss by attacking: x - eps * s * sign(w), no clipping
    w = model.weight  # input space, normalization folded in
    s = (2 * y - 1).float()
    x_adv = x - eps * s[:, None, None, None] * w.sign()[None]
    lg = model(x_adv)
    numeric = F.softplus(-(s * (lg[:, 1] - lg[:, 0])))
    assert torch.allclose(closed, numeric, atol=1e-5)
    # eps = 0: the clean logistic loss
    lg0 = model(x)
    assert torch.allclose(cl.logistic_adversarial_loss(model, x, y, 0.0),
                          F.softplus(-(s * (lg0[:, 1] - lg0[:, 0]))), atol=1e-6)
    with pytest.raises(TypeError):
        cl.logistic_adversarial_loss(nn.Linear(6, 2), x, y, eps)  # type: ignore[arg-type]


def test_weight_sparsity_known_answer() -> None:
    w = torch.tensor([[1.0, 0.0, -2.0, 0.001], [0.0, 0.0, 4.0, 0.0]])
    s = cl.weight_sparsity(w, rel=0.01)
    assert s["l1_per_class"] == pytest.approx((3.001 + 4.0) / 2)
    assert s["max_abs"] == 4.0 and s["near_zero_share"] == pytest.approx(5 / 8)


# ----------------------------------------------------------------------------- where to perturb


def _mlp() -> nn.Module:
    from advlab.models.registry import create_model

    torch.manual_seed(0)  # test model only
    return create_model("mlp", in_shape=(1, 4, 4), num_classes=3, hidden=[8, 8])


@pytest.mark.parametrize("layer", ["input", "hidden", "logits"])
def test_layer_fgsm_with_zero_step_is_plain_training(layer: str) -> None:
    model = _mlp()
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    loss, logits, passes = cl.LayerFGSMTraining(eps=0.0, layer=layer)(model, x, y)
    assert passes == 3
    assert torch.allclose(loss, F.cross_entropy(model(x), y), atol=1e-6)
    assert torch.allclose(logits, model(x), atol=1e-6)


def test_layer_fgsm_at_the_input_is_goodfellows_objective() -> None:
    model = _mlp()
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    ours = cl.LayerFGSMTraining(eps=0.1, layer="input")(model, x, y)[0]
    ref = FGSMTraining(eps=0.1, alpha=0.5)(model, x, y)[0]
    assert torch.allclose(ours, ref, atol=1e-6)
    # a step at the logits raises the loss (it is the loss's own ascent direction)
    assert cl.LayerFGSMTraining(eps=0.1, layer="logits")(model, x, y)[0] > F.cross_entropy(model(x), y)


def test_layer_fgsm_rejects_bad_settings() -> None:
    x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    for kw, msg in (({"layer": "middle"}, "layer"), ({"eps": -1.0}, "eps"), ({"alpha": 2.0}, "alpha"),
                    ({"layer": "hidden", "hidden_index": 99}, "split index")):
        with pytest.raises(ValueError, match=msg):
            cl.LayerFGSMTraining(**kw)(_mlp(), x, y)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="normalize"):
        cl.LayerFGSMTraining(layer="logits")(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), x, y)


# ----------------------------------------------------------------------------- sections


def test_the_three_sections_run_on_digits_and_render(digits_train, digits_test, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = LectureContext(train=digits_train, test=digits_test, quick=True, cache_dir=tmp_path)
    torch.manual_seed(11)
    before = torch.get_rng_state()
    secs = run_sections(ctx, ["claims_xs_and_os", "claims_linear_vs_deep_at", "claims_perturb_layer"])
    assert torch.equal(torch.get_rng_state(), before)  # sections never read or advance the global RNG
    xo, lin, lay = secs
    assert {r["model"] for r in xo.data["rows"]} == {"deep A", "deep B", "linear"}
    assert {(r["model"], r["training"]) for r in lin.data["rows"]} == {
        (m, t) for m in ("softmax regression", "maxout network") for t in ("clean", "adversarial")}
    assert [r["perturbed"] for r in lay.data["rows"]][0] == "clean training"
    for r in lay.data["rows"]:
        assert 0 <= r["fgsm_acc"] <= r["fgsm_acc_small"] + 0.05 and 0 <= r["clean_acc"] <= 1
    html = render_report("t", secs, {"version": "0", "dataset": "digits", "mode": "quick",
                                     "seconds": 0.0, "seed": 0, "notices": [], "date": "today"})
    assert html.count("data:image/png;base64") >= 5
    assert "89.4%" in html and "usually just breaks the whole process" in html

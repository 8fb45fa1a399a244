"""scikit-learn wrappers, the decision-tree attack and the transfer experiments (issue 6), on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from advlab.analysis.transfer import (
    cross_training_set,
    ensemble_transfer,
    source_method,
    transfer_matrix,
)
from advlab.attacks import FGSM, PGD
from advlab.attacks.tree import DecisionTreeAttack, leaf_boxes
from advlab.criteria import TargetedMisclassification
from advlab.defenses import TrainConfig, fit
from advlab.models import create_model
from advlab.models.ensemble import EnsembleModel
from advlab.models.sklearn import (
    KNNRelaxation,
    SklearnDecisionTree,
    SklearnKNN,
    SklearnLinearSVM,
    SklearnLogisticRegression,
    TorchClassifier,
    create_sklearn_model,
)
from advlab.threat import ThreatModel


@pytest.fixture(scope="module")
def data(digits_train, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_train.tensors()
    xt, yt = digits_test.tensors()
    return x, y, xt[:150], yt[:150]


@pytest.fixture(scope="module")
def family(data):  # type: ignore[no-untyped-def]
    x, y, _, _ = data
    return {
        "LR": SklearnLogisticRegression(max_iter=200).fit(x, y),
        "SVM": SklearnLinearSVM().fit(x, y),
        "DT": SklearnDecisionTree().fit(x, y),
        "kNN": SklearnKNN(k=3).fit(x, y),
    }


def _mlp(x, y, seed, settings):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    m = create_model("mlp", hidden=(64,), **settings)
    fit(m, (x * 255).round().to(torch.uint8), y, TrainConfig(epochs=8, batch_size=64, lr=1e-2, seed=seed))
    return m.eval()


# ----------------------------------------------------------------------------- wrappers


def test_wrappers_fit_predict_and_learn(family, data):  # type: ignore[no-untyped-def]
    _, _, xt, yt = data
    for name, m in family.items():
        pred = m.predict(xt)
        assert pred.dtype == torch.long and pred.shape == yt.shape
        assert m.score(xt, yt) > 0.7, name  # digits is easy: all four families learn it


def test_linear_modules_match_sklearn_decision_function(family, data):  # type: ignore[no-untyped-def]
    _, _, xt, _ = data
    for name in ("LR", "SVM"):
        m = family[name]
        with torch.no_grad():
            logits = m.as_module()(xt)
        ref = m.estimator_.decision_function(xt.flatten(1).numpy())
        assert np.allclose(logits.numpy(), ref, atol=1e-4)
        assert torch.equal(logits.argmax(1), m.predict(xt))


def test_knn_relaxation_agrees_with_knn_and_has_gradients(family, data):  # type: ignore[no-untyped-def]
    _, _, xt, yt = data
    knn = family["kNN"]
    relax = knn.as_module()
    with torch.no_grad():
        agree = (relax(xt).argmax(1) == knn.predict(xt)).float().mean()
    assert agree > 0.9
    xg = xt[:4].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(relax(xg)[:, 0].sum(), xg)
    assert bool((g.flatten(1).abs().sum(1) > 0).all())
    # a training point's nearest neighbour of its own class is itself (distance 0 enters the mean)
    assert family["DT"].as_module() is None


def test_wrapper_validation(data):  # type: ignore[no-untyped-def]
    x, y, xt, _ = data
    with pytest.raises(ValueError, match="not fitted"):
        SklearnDecisionTree().predict(xt)
    with pytest.raises(TypeError, match="floating-point"):
        SklearnDecisionTree().fit((x * 255).to(torch.uint8), y)
    with pytest.raises(ValueError, match="labels"):
        SklearnDecisionTree().fit(x, y[:10])
    with pytest.raises(ValueError, match="unknown"):
        create_sklearn_model("forest")
    dt = SklearnDecisionTree(max_depth=3).fit(x, y)
    with pytest.raises(ValueError, match="shape"):
        dt.predict(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="k="):
        KNNRelaxation(x[:5], torch.arange(5), k=2)


# ----------------------------------------------------------------------------- tree attack


def test_leaf_boxes_contain_their_training_points(family, data):  # type: ignore[no-untyped-def]
    x, _, _, _ = data
    dt = family["DT"]
    boxes = leaf_boxes(dt)
    xf = x[:50].flatten(1).double().numpy()
    leaf_of = dt.estimator_.apply(x[:50].flatten(1).numpy())
    for i in range(50):
        j = int(np.nonzero(boxes.node == leaf_of[i])[0][0])
        assert (xf[i] > boxes.lower[j]).all() and (xf[i] <= boxes.upper[j]).all()
        assert boxes.label[j] == dt.estimator_.predict(xf[i:i + 1].astype(np.float32))[0]


def test_tree_attack_is_minimal_and_exact_on_a_stump():
    # one split at x[0] <= 0.5: the minimal Linf change is 0.5 - x[0] (+ margin)
    from sklearn.tree import DecisionTreeClassifier

    xs = np.array([[0.1, 0.0], [0.2, 1.0], [0.8, 0.0], [0.9, 1.0]], dtype=np.float32)
    est = DecisionTreeClassifier(max_depth=1).fit(xs, [0, 0, 1, 1])
    thr = float(est.tree_.threshold[0])
    x = torch.tensor([[[[0.3, 0.7]]]])
    atk = DecisionTreeAttack(margin=1e-3)
    r = atk(est, x, torch.tensor([0]), threat=ThreatModel("linf", 0.5))
    assert bool(r.success.all())
    assert r.x_adv[0, 0, 0, 1] == x[0, 0, 0, 1]  # untouched feature
    assert float(r.x_adv[0, 0, 0, 0]) == pytest.approx(thr + 1e-3, abs=1e-6)
    assert float(r.distance[0]) == pytest.approx(thr + 1e-3 - 0.3, abs=1e-6)
    # below the needed eps: unchanged and unsuccessful
    r2 = atk(est, x, torch.tensor([0]), threat=ThreatModel("linf", 0.1))
    assert not bool(r2.success.any()) and torch.equal(r2.x_adv, x)


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 1.0), ("l1", 2.0)])
def test_tree_attack_contract(family, data, norm, eps):  # type: ignore[no-untyped-def]
    _, _, xt, yt = data
    dt = family["DT"]
    threat = ThreatModel(norm, eps)
    x_copy = xt.clone()
    r = DecisionTreeAttack()(dt, xt, yt, threat=threat)
    assert torch.equal(xt, x_copy)
    assert bool(threat.contains(r.x_adv, xt).all())
    assert torch.equal(r.success, dt.predict(r.x_adv) != yt)  # reported success is real
    assert r.success_rate > 0.9  # a tree is brittle: one or two pixels across a threshold
    zero = DecisionTreeAttack()(dt, xt, yt, threat=ThreatModel(norm, 0.0))
    assert torch.equal(zero.x_adv, xt) and zero.x_adv.data_ptr() != xt.data_ptr()
    again = DecisionTreeAttack()(dt, xt, yt, threat=threat)
    assert torch.equal(again.x_adv, r.x_adv)


def test_tree_attack_targeted_and_unbounded(family, data):  # type: ignore[no-untyped-def]
    _, _, xt, yt = data
    dt = family["DT"]
    targets = (yt + 1) % 10
    r = DecisionTreeAttack()(dt, xt[:30], TargetedMisclassification(targets[:30]))
    assert bool(r.success.all())
    assert torch.equal(dt.predict(r.x_adv), targets[:30])
    # unbounded minimal distances never exceed the bounded attack's successes
    b = DecisionTreeAttack()(dt, xt, yt, threat=ThreatModel("linf", 0.3))
    u = DecisionTreeAttack()(dt, xt, yt)
    assert bool(u.success.all())
    assert bool((u.distance[b.success] <= 0.3 + 1e-6).all())


# ----------------------------------------------------------------------------- experiments


def test_transfer_matrix_on_digits(family, data, digits_settings):  # type: ignore[no-untyped-def]
    x, y, xt, yt = data
    models = {"DNN": _mlp(x, y, 0, digits_settings), **family}
    threat = ThreatModel("linf", 0.3)
    m = transfer_matrix(models, models, xt, yt, threat, attack=FGSM(), keep_adversarials=True)
    assert m.sources == m.targets == ["DNN", "LR", "SVM", "DT", "kNN"]
    r = np.array(m.rates)
    assert r.shape == (5, 5) and ((r >= 0) & (r <= 1)).all()
    # white-box on the differentiable sources and the tree is strong
    for s in ("DNN", "LR", "SVM", "DT"):
        assert m.rate(s, s) > 0.8, s
    # linear models' FGSM examples transfer to the decision tree (published LR->DT: 87.4% on MNIST)
    assert m.rate("LR", "DT") > 0.5
    # the cell definition: recompute one by hand
    ok = models["LR"].predict(xt) == yt
    adv = m.adversarials["LR"]
    assert adv.shape[0] == int(ok.sum()) == m.n_source_correct[1]
    assert m.rate("LR", "DT") == pytest.approx(float((models["DT"].predict(adv) != yt[ok]).float().mean()))
    assert "tree" in m.methods["DT"] and "relaxation" in m.methods["kNN"]
    d = m.to_dict()
    assert d["threat"]["eps"] == 0.3 and len(d["rates_target_correct"]) == 5


def test_transfer_matrix_eps_zero_only_counts_clean_errors(family, data):  # type: ignore[no-untyped-def]
    _, _, xt, yt = data
    m = transfer_matrix({"LR": family["LR"]}, {"LR": family["LR"], "SVM": family["SVM"]}, xt, yt,
                        ThreatModel("linf", 0.0))
    assert m.rate("LR", "LR") == 0.0
    assert m.rates_target_correct[0][1] == 0.0


def test_cross_training_set_and_ensemble(data, digits_settings):  # type: ignore[no-untyped-def]
    x, y, xt, yt = data
    half = x.shape[0] // 2
    a = _mlp(x[:half], y[:half], 1, digits_settings)
    b = _mlp(x[half:], y[half:], 2, digits_settings)
    threat = ThreatModel("linf", 0.3)
    r = cross_training_set(a, b, xt, yt, threat, attack=FGSM())
    assert r.a_self > 0.8 and r.b_self > 0.8
    assert r.a_to_b > 0.3 and r.b_to_a > 0.3  # disjoint training data, yet examples transfer
    members = {"a": a, "b": b}
    ens = EnsembleModel(list(members.values()))
    with torch.no_grad():
        probs = (a(xt).softmax(1) + b(xt).softmax(1)) / 2
        assert torch.allclose(ens(xt).exp(), probs, atol=1e-5)
    held = _mlp(x, y, 3, digits_settings)
    e = ensemble_transfer(members, held, xt, yt, threat, attack=PGD(steps=5, random_init=False))
    assert e.ensemble_rate >= min(e.single_rates.values()) - 0.05
    assert set(e.single_rates) == {"a", "b"}
    with pytest.raises(ValueError):
        EnsembleModel([])
    with pytest.raises(ValueError):
        EnsembleModel([a, b], weights=[1.0])


def test_torch_classifier_restores_mode_and_source_method(trained_softmax):  # type: ignore[no-untyped-def]
    trained_softmax.train()
    try:
        TorchClassifier(trained_softmax).predict(torch.rand(3, 1, 8, 8))
        assert trained_softmax.training
    finally:
        trained_softmax.eval()
    assert "logits" in source_method(trained_softmax)
    with pytest.raises(TypeError):
        source_method(object())
    assert isinstance(trained_softmax, nn.Module)


# ----------------------------------------------------------------------------- MI-FGSM


def _reference_mifgsm(model, x, y, eps, steps, mu):  # type: ignore[no-untyped-def]
    """Dong et al. 2018, Algorithm 1, written out directly (Linf, cross-entropy)."""
    alpha, g, xa = eps / steps, torch.zeros_like(x), x.clone()
    for _ in range(steps):
        xg = xa.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(xg), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
        g = mu * g + grad / grad.abs().sum(dim=(1, 2, 3), keepdim=True)
        xa = torch.min(torch.max(xa + alpha * g.sign(), x - eps), x + eps).clamp(0, 1).detach()
    return xa


@pytest.mark.parametrize("mu", [0.0, 1.0])
def test_mifgsm_matches_the_algorithm_and_respects_the_ball(trained_softmax, data, mu):  # type: ignore[no-untyped-def]
    from advlab.attacks.momentum import MIFGSM

    _, _, xt, yt = data
    x, y = xt[:40], yt[:40]
    threat = ThreatModel("linf", 0.2)
    r = MIFGSM(steps=5, decay=mu)(trained_softmax, x, y, threat=threat)
    ref = _reference_mifgsm(trained_softmax, x, y, 0.2, 5, mu)
    assert torch.allclose(r.x_adv, ref, atol=1e-6)
    assert float((r.x_adv - x).abs().amax()) <= 0.2 + 1e-6
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    with torch.no_grad():
        assert torch.equal(r.success, trained_softmax(r.x_adv).argmax(1) != y)
    assert r.success_rate > 0.5
    assert torch.equal(r.passes, torch.full((40,), 5))


def test_mifgsm_momentum_changes_the_path_and_validates(trained_softmax, data):  # type: ignore[no-untyped-def]
    from advlab.attacks.momentum import MIFGSM

    _, _, xt, yt = data
    threat = ThreatModel("linf", 0.2)
    a = MIFGSM(steps=8, decay=1.0)(trained_softmax, xt[:40], yt[:40], threat=threat).x_adv
    b = MIFGSM(steps=8, decay=0.0)(trained_softmax, xt[:40], yt[:40], threat=threat).x_adv
    assert not torch.equal(a, b)
    l2 = MIFGSM(steps=4)(trained_softmax, xt[:10], yt[:10], threat=ThreatModel("l2", 1.0))
    assert float(l2.distance.max()) <= 1.0 + 1e-5
    for bad in ({"steps": 0}, {"decay": -1.0}, {"loss": "nope"}, {"step_size": -0.1}):
        with pytest.raises(ValueError):
            MIFGSM(**bad)(trained_softmax, xt[:2], yt[:2], threat=threat)  # type: ignore[arg-type]

"""The label-only black-box attack (Papernot et al. 2017), in-process and against the HTTP oracle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.attacks.substitute import SubstituteAttack
from advlab.models import create_model
from advlab.models.sklearn import SklearnDecisionTree
from advlab.serve import BackgroundServer, HTTPOracle, ServeConfig, create_app
from advlab.threat import ThreatModel


def _substitute(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", in_shape=(1, 8, 8), num_classes=10, hidden=(64,))


class CountingOracle:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.seen = 0

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        with torch.no_grad():
            return self.model(x).argmax(1)


@pytest.fixture(scope="module")
def split(digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.tensors()
    return x[:40], x[40:240], y[40:240]


def test_query_accounting_and_augmentation_geometry(trained_softmax, split):  # type: ignore[no-untyped-def]
    x_seed, _, _ = split
    oracle = CountingOracle(trained_softmax)
    atk = SubstituteAttack(substitute_epochs=3, train_epochs=2, sign_period=1)
    sub = _substitute()
    before = {k: v.clone() for k, v in sub.state_dict().items()}
    assert atk.fit(oracle, x_seed, sub, generator=torch.Generator().manual_seed(0)) is atk
    # the set doubles each round except the last: 40 + 40 + 80 labels
    assert atk.queries_ == oracle.seen == 160
    assert atk.train_x_.shape[0] == 160 and [h["queries"] for h in atk.history_] == [40, 80, 160]
    # labels are the oracle's, never the true ones
    with torch.no_grad():
        assert torch.equal(atk.train_y_, trained_softmax(atk.train_x_).argmax(1))
    # each new point is its parent moved by lambda = 0.1 per pixel (or clipped at the bounds)
    parent, child = atk.train_x_[:40], atk.train_x_[40:80]
    step = (child - parent).abs()
    clipped = (child == 0) | (child == 1)
    assert bool(((step - 0.1).abs() < 1e-6)[~clipped].all())
    # the argument substitute is not modified
    assert all(torch.equal(v, before[k]) for k, v in sub.state_dict().items())


def test_jacobian_sign_and_periodic_flip(trained_softmax, split):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.full((2, 1, 2, 2), 0.5)
    y = torch.tensor([0, 2])
    g = SubstituteAttack()._jacobian_sign(lin, x, y)
    assert torch.equal(g.flatten(1), lin[1].weight[y].sign())
    # a frozen substitute (lr ~ 0) makes every augmentation step predictable: with tau = 1 the
    # first round moves along +sign(J), the second along -sign(J)
    x_seed = split[0][:10]
    sub = _substitute(1)
    atk = SubstituteAttack(substitute_epochs=3, train_epochs=1, sign_period=1, lr=1e-30)
    atk.fit(trained_softmax, x_seed, sub)
    xs, ys = atk.train_x_, atk.train_y_
    s0 = SubstituteAttack()._jacobian_sign(sub.eval(), xs[:10], ys[:10])
    assert torch.equal(xs[10:20], (xs[:10] + 0.1 * s0).clamp(0, 1))
    s1 = SubstituteAttack()._jacobian_sign(sub.eval(), xs[:20], ys[:20])
    assert torch.equal(xs[20:40], (xs[:20] - 0.1 * s1).clamp(0, 1))


def test_budget_is_respected(trained_softmax, split):  # type: ignore[no-untyped-def]
    x_seed, _, _ = split
    oracle = CountingOracle(trained_softmax)
    atk = SubstituteAttack(substitute_epochs=4, train_epochs=1, max_queries=100)
    atk.fit(oracle, x_seed, _substitute(), generator=torch.Generator().manual_seed(0))
    assert atk.queries_ == oracle.seen == 100
    with pytest.raises(ValueError, match="not fitted"):
        SubstituteAttack().craft(x_seed, ThreatModel("linf", 0.3))
    with pytest.raises(ValueError, match="substitute_epochs"):
        SubstituteAttack(substitute_epochs=0).fit(oracle, x_seed, _substitute())
    with pytest.raises(ValueError, match="empty"):
        SubstituteAttack().fit(oracle, x_seed[:0], _substitute())


def test_substitute_examples_fool_the_oracle(trained_softmax, split):  # type: ignore[no-untyped-def]
    x_seed, x_eval, y_eval = split
    threat = ThreatModel("linf", 0.3)
    atk = SubstituteAttack(substitute_epochs=4, train_epochs=10, lr=3e-3)
    atk.fit(trained_softmax, x_seed, _substitute(), generator=torch.Generator().manual_seed(0),
            callback=lambda r, s: s.evaluate(trained_softmax, x_eval, y_eval, threat, with_true_labels=True))
    final = atk.history_[-1]
    g = torch.Generator().manual_seed(0)
    noise = (torch.randint(0, 2, x_eval.shape, generator=g) * 2 - 1) * 0.3
    with torch.no_grad():
        rnd = float((trained_softmax((x_eval + noise).clamp(0, 1)).argmax(1) != y_eval).float().mean())
    # 40 seed images and 320 labels: the oracle misclassifies most examples of the substitute
    assert final["oracle_misclassification"] > 0.6
    assert final["oracle_misclassification"] > rnd + 0.3
    assert final["eval_queries"] == 3 * x_eval.shape[0]
    assert final["oracle_misclassification_true_labels"] > 0.6


def test_against_the_http_oracle(trained_softmax, split):  # type: ignore[no-untyped-def]
    x_seed, x_eval, y_eval = split
    app = create_app(trained_softmax, ServeConfig(in_shape=(1, 8, 8), num_classes=10, max_batch=64,
                                                  query_budget=160))
    with BackgroundServer(app) as srv:
        oracle = HTTPOracle(srv.url, batch_size=64)
        atk = SubstituteAttack(substitute_epochs=3, train_epochs=5, lr=3e-3)
        atk.fit(oracle, x_seed, _substitute(), generator=torch.Generator().manual_seed(0))
        assert atk.queries_ == oracle.queries == app.state.stats.queries == 160
    # the same run in-process gives the same substitute (labels are identical)
    ref = SubstituteAttack(substitute_epochs=3, train_epochs=5, lr=3e-3)
    ref.fit(trained_softmax, x_seed, _substitute(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(ref.train_y_, atk.train_y_)
    r = atk.evaluate(trained_softmax, x_eval, y_eval, ThreatModel("linf", 0.3))
    assert 0 <= r["oracle_misclassification"] <= 1


def test_a_decision_tree_oracle(digits_train, split):  # type: ignore[no-untyped-def]
    x_seed, x_eval, y_eval = split
    x, y = digits_train.tensors()
    dt = SklearnDecisionTree(max_depth=8).fit(x, y)
    atk = SubstituteAttack(substitute_epochs=3, train_epochs=5, lr=3e-3)
    atk.fit(dt, x_seed, _substitute(), generator=torch.Generator().manual_seed(0))
    r = atk.evaluate(dt, x_eval, y_eval, ThreatModel("linf", 0.3))
    assert r["oracle_misclassification"] > 1 - r["oracle_clean_acc"]  # worse than its clean error


def test_substitute_ensemble_replays_rounds_without_queries(trained_softmax, split):  # type: ignore[no-untyped-def]
    x_seed, x_eval, _ = split
    fit_kw = dict(substitute_epochs=3, train_epochs=10, sign_period=1, lr=3e-3)
    single = SubstituteAttack(**fit_kw).fit(CountingOracle(trained_softmax), x_seed, _substitute(),
                                            generator=torch.Generator().manual_seed(0))
    oracle = CountingOracle(trained_softmax)
    sub = _substitute()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    atk = SubstituteAttack(**fit_kw, ensemble=3).fit(oracle, x_seed, sub,
                                                    generator=torch.Generator().manual_seed(0))
    # the extra substitutes cost no queries and leave the caller's global RNG alone
    assert atk.queries_ == oracle.seen == single.queries_ == 160
    assert torch.equal(torch.get_rng_state(), state)
    # the fitted substitute and the labelled set are those of the single run
    assert torch.equal(atk.train_x_, single.train_x_)
    assert all(torch.equal(a, b) for a, b in zip(atk.substitute_.state_dict().values(),
                                                  single.substitute_.state_dict().values(), strict=True))
    assert len(atk.substitutes_) == 3 and atk.substitutes_[0] is atk.substitute_
    w = [m[-1].weight if isinstance(m, nn.Sequential) else next(m.parameters()) for m in atk.substitutes_]
    assert not torch.equal(w[1], w[2]) and not torch.equal(w[0], w[1])  # fresh initialisations
    # each replayed member learnt the oracle's labels on the gathered set as well as the fitted one
    with torch.no_grad():
        agree = [float((m(atk.train_x_).argmax(1) == atk.train_y_).float().mean()) for m in atk.substitutes_]
        assert agree[0] > 0.8 and min(agree[1:]) > agree[0] - 0.1, agree
        # craft attacks the mean of the members' logits
        mean = torch.stack([m(x_eval) for m in atk.substitutes_]).mean(0)
        assert torch.allclose(atk.attack_model_(x_eval), mean, atol=1e-5)
    with pytest.raises(ValueError, match="ensemble"):
        SubstituteAttack(ensemble=0).fit(oracle, x_seed, _substitute())


def test_substitute_training_augmentation(trained_softmax, split):  # type: ignore[no-untyped-def]
    x_seed, _, _ = split
    fit_kw = dict(substitute_epochs=2, train_epochs=2, sign_period=1, lr=3e-3, batch_size=16)
    seen: list[torch.Tensor] = []

    def shift(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        assert generator is not None  # a generator always comes, so the global RNG is never used
        seen.append(x)
        return torch.roll(x, 1, dims=-1)

    oracle = CountingOracle(trained_softmax)
    sub = _substitute()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    atk = SubstituteAttack(**fit_kw, augment=shift).fit(oracle, x_seed, sub)  # no generator
    assert torch.equal(torch.get_rng_state(), state)
    plain = SubstituteAttack(**fit_kw).fit(CountingOracle(trained_softmax), x_seed, _substitute())
    # no extra queries; every training batch went through the transform (2 rounds x 2 epochs)
    assert atk.queries_ == oracle.seen == plain.queries_
    n_batches = sum(2 * -(-h["train_size"] // 16) for h in atk.history_)
    assert len(seen) == n_batches
    # training saw shifted images, so the substitutes differ
    w_a, w_p = (next(m.parameters()) for m in (atk.substitute_, plain.substitute_))
    assert not torch.equal(w_a, w_p)
    assert "augment" in atk.settings() and "shift" in atk.settings()["augment"]
    with pytest.raises(ValueError, match="shape"):
        SubstituteAttack(**fit_kw, augment=lambda x, generator=None: x[:, :, :-1]).fit(
            trained_softmax, x_seed, _substitute())
    with pytest.raises(TypeError, match="callable"):
        SubstituteAttack(augment=3).fit(trained_softmax, x_seed, _substitute())  # type: ignore[arg-type]

"""Attacks on policies (issue 7): rollouts, DQN, per-step observation attacks, noise, transfer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

pytest.importorskip("gymnasium")

from advlab.experiments import get_or_train_policy  # noqa: E402
from advlab.rl import (  # noqa: E402
    DQNConfig,
    ObservationAttack,
    random_perturbation,
    return_vs_eps,
    rollout,
    train_dqn,
)
from advlab.rl.envs import make_env  # noqa: E402
from advlab.threat import get_norm  # noqa: E402

#: per-feature unit of eps for the tests (cart position, velocity, pole angle, angular velocity)
SCALE = torch.tensor([0.5, 0.5, 0.05, 0.5])


def linear_policy(w: list[float]) -> nn.Module:
    """Push right when ``w . obs > 0``: ``Q = (-w . obs, w . obs)``."""
    lin = nn.Linear(4, 2)
    wt = torch.tensor(w)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([-wt, wt]))
        lin.bias.zero_()
    return lin.eval()


#: a classic hand-made CartPole controller (balances for the full 500 steps) and a second,
#: different one for the transfer (black-box) setting
TARGET = [0.0, 0.0, 1.0, 0.5]
SOURCE = [0.1, 0.2, 1.0, 0.3]


def test_rollout_is_seeded_and_the_controller_balances():
    a = rollout(linear_policy(TARGET), "cartpole", [0, 1, 2])
    b = rollout(linear_policy(TARGET), "CartPole-v1", [0, 1, 2])
    assert a.returns == b.returns == [500.0, 500.0, 500.0]
    assert a.changed == [0, 0, 0] and a.changed_share == 0.0
    bad = rollout(linear_policy([0.0, 0.0, -1.0, -0.5]), "cartpole", [0, 1])  # pushes the wrong way
    assert bad.mean_return < 20
    short = rollout(linear_policy(TARGET), "cartpole", [0], max_steps=17, record=True)
    assert short.lengths == [17] and len(short.trace["obs"]) == 17


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_random_perturbation_has_exactly_the_norm(norm):  # type: ignore[no-untyped-def]
    d = random_perturbation((50, 4), norm, 0.3, torch.Generator().manual_seed(0))
    assert torch.allclose(get_norm(norm).norm(d), torch.full((50,), 0.3), atol=1e-6)
    again = random_perturbation((50, 4), norm, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(d, again)
    if norm == "l1":
        assert bool(((d != 0).sum(1) == 1).all())  # one feature, like the L1 FGSM step


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_fgsm_step_on_a_linear_policy_known_answer(norm):  # type: ignore[no-untyped-def]
    w = torch.tensor(TARGET)
    policy = linear_policy(TARGET)
    obs = torch.tensor([[0.0, 0.1, 0.01, 0.05], [0.0, -0.1, -0.02, 0.03]])
    pref_sign = torch.sign(obs @ w)  # +1: prefers "right"
    eps = 0.4
    seen = ObservationAttack("fgsm", norm, eps).perturbation(policy, SCALE)(obs)
    z = (seen - obs) / SCALE  # the step in scaled coordinates
    g = (w * SCALE)  # d(w . obs)/dz
    if norm == "linf":
        expected = -eps * pref_sign[:, None] * g.sign()[None]
        expected[:, g == 0] = z[:, g == 0]  # sign(0): untouched features may not move
        assert torch.allclose(z, expected, atol=1e-6)
    elif norm == "l2":
        expected = -eps * pref_sign[:, None] * (g / g.norm())[None]
        assert torch.allclose(z, expected, atol=1e-6)
    else:  # the whole budget on the most sensitive feature (the angular velocity here)
        k = int(g.abs().argmax())
        assert k == 3
        assert torch.allclose(z[:, k], -eps * pref_sign, atol=1e-6)
        assert torch.allclose(z.abs().sum(1), torch.full((2,), eps), atol=1e-6)
    # the step lowers the preferred action's score
    assert bool(((seen @ w) * pref_sign < (obs @ w) * pref_sign).all())


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_attack_lowers_return_below_noise_and_transfers(norm):  # type: ignore[no-untyped-def]
    seeds = [0, 1, 2, 3]
    curve = return_vs_eps(linear_policy(TARGET), "cartpole", seeds, [0.0, 1.0], norm=norm,
                          scale=SCALE, source=linear_policy(SOURCE),
                          generator=torch.Generator().manual_seed(0), max_steps=200)
    d = curve.to_dict()
    assert d["clean_return"] == 200.0
    assert d["attack_return"][0] == d["noise_return"][0] == 200.0  # eps = 0: nothing changes
    assert d["attack_changed"][0] == 0.0
    # measured (linf/l2/l1): attack 24/33/33, noise 160/200/200, transfer 24/52/33
    assert d["attack_return"][1] < 0.5 * d["noise_return"][1]
    assert d["transfer_return"][1] < 0.5 * d["noise_return"][1]
    assert d["attack_changed"][1] > 0.2
    again = return_vs_eps(linear_policy(TARGET), "cartpole", seeds, [1.0], norm=norm, scale=SCALE,
                          generator=torch.Generator().manual_seed(0), max_steps=200)
    assert again.noise[0].returns == curve.noise[1].returns  # seeded noise baseline


def test_dqn_training_is_seeded_and_cached(tmp_path):  # type: ignore[no-untyped-def]
    cfg = DQNConfig(total_steps=400, learning_starts=100, eval_every=200, eval_episodes=2,
                    hidden=(16,), seed=3)
    rng = torch.get_rng_state()
    a = train_dqn("cartpole", cfg)
    b = train_dqn("cartpole", cfg)
    assert torch.equal(torch.get_rng_state(), rng)  # no global reseeding
    for (k, va), (_, vb) in zip(a.q.state_dict().items(), b.q.state_dict().items(), strict=True):
        assert torch.equal(va, vb), k
    assert [s for s, _ in a.history] == [200, 400] and a.history == b.history
    assert a.eval_return == max(r for _, r in a.history)
    assert a.obs_scale.shape == (4,) and bool((a.obs_scale > 0).all())
    c = train_dqn("cartpole", DQNConfig(**{**cfg.__dict__, "seed": 4}))
    assert not torch.equal(c.q.net[0].weight, a.q.net[0].weight)
    first = get_or_train_policy("cartpole", cfg, tmp_path)
    assert first.seconds > 0 and any(tmp_path.iterdir())
    cached = get_or_train_policy("cartpole", cfg, tmp_path)
    assert cached.seconds == 0.0
    for va, vb in zip(first.q.state_dict().values(), cached.q.state_dict().values(), strict=True):
        assert torch.equal(va, vb)
    obs = torch.randn(5, 4)
    assert torch.equal(first.q(obs), cached.q(obs))


def test_dqn_learns_something_quickly():
    # 3,000 steps: far from solved, but clearly better than the random policy's ~22
    p = train_dqn("cartpole", DQNConfig(total_steps=3_000, learning_starts=500, eval_every=1_000,
                                        eval_episodes=3, seed=0))
    assert p.eval_return > 60, p.history


@pytest.mark.parametrize("make,err,match", [
    (lambda: ObservationAttack("pgd"), ValueError, "kind"),
    (lambda: ObservationAttack("fgsm", "l3"), ValueError, "norm"),
    (lambda: ObservationAttack("fgsm", "linf", -0.1), ValueError, "eps"),
    (lambda: ObservationAttack("fgsm", "linf", math.nan), ValueError, "eps"),
    (lambda: ObservationAttack().perturbation(linear_policy(TARGET), torch.tensor([1.0, 0.0, 1, 1])),
     ValueError, "scale"),
    (lambda: DQNConfig(total_steps=0).validate(), ValueError, "total_steps"),
    (lambda: DQNConfig(gamma=1.5).validate(), ValueError, "gamma"),
    (lambda: DQNConfig(hidden=()).validate(), ValueError, "hidden"),
    (lambda: rollout(linear_policy(TARGET), "cartpole", []), ValueError, "seed"),
    (lambda: rollout("policy", "cartpole", [0]), TypeError, "Module"),
    (lambda: make_env("NoSuchEnv-v9"), ValueError, "unknown environment"),
    (lambda: make_env("Pendulum-v1"), ValueError, "discrete"),
])
def test_bad_parameters_are_rejected(make, err, match):  # type: ignore[no-untyped-def]
    with pytest.raises(err, match=match):
        make()


def test_cli_rl_attack(tmp_path):  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from advlab.cli.app import app

    out = tmp_path / "rl.json"
    args = ["rl", "attack", "--steps", "300", "--episodes", "2", "--eps", "0,0.5", "--norms", "linf",
            "--out", str(out), "--cache-dir", str(tmp_path)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    c = d["curves"][0]
    assert c["norm"] == "linf" and c["eps"] == [0.0, 0.5]
    assert c["attack_return"][0] == c["noise_return"][0] == c["clean_return"]
    assert len(list((tmp_path / "rl").iterdir())) == 2  # target and transfer source, cached
    bad = CliRunner().invoke(app, ["rl", "attack", "--episodes", "0", "--cache-dir", str(tmp_path)])
    assert isinstance(bad.exception, ValueError) and "episodes" in str(bad.exception)


def test_seaquest_absent_gives_a_clear_install_message(monkeypatch):  # type: ignore[no-untyped-def]
    import sys

    from advlab.rl.envs import minatar_available

    monkeypatch.setitem(sys.modules, "minatar", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    assert not minatar_available()
    with pytest.raises(ImportError, match="pip install --no-deps minatar"):
        make_env("seaquest")


def test_seaquest_env_policy_scale_and_attack():  # type: ignore[no-untyped-def]
    pytest.importorskip("minatar")
    from advlab.rl import default_config
    from advlab.rl.dqn import bounded_scale

    e = make_env("seaquest")
    assert e.observation_space.shape == (1000,) and e.action_space.n == 6
    o1, _ = e.reset(seed=5)
    assert o1.dtype == "float32" and set(o1.tolist()) <= {0.0, 1.0} and o1.sum() > 0
    o2, _ = make_env("seaquest").reset(seed=5)
    assert (o1 == o2).all()
    scale = bounded_scale(e.observation_space)
    assert scale is not None and torch.equal(scale, torch.ones(1000))  # eps in pixel units
    assert bounded_scale(make_env("cartpole").observation_space) is None  # unbounded velocities
    assert default_config("seaquest").stop_return == math.inf
    assert default_config("cartpole") == DQNConfig()
    # a policy that only goes by the sub's row: down (4) when the sub is high, else fire (5)
    q = nn.Linear(1000, 6)
    with torch.no_grad():
        q.weight.zero_()
        q.bias.zero_()
        q.bias[5] = 0.5
        w = torch.zeros(10, 10, 10)
        w[:4, :, 0] = 1.0  # channel 0 (the sub) in the top rows
        q.weight[4] = w.flatten()
    q.eval()
    seeds = [0, 1, 2]
    curve = return_vs_eps(q, "seaquest", seeds, [0.0, 0.6], norm="linf", scale=torch.ones(1000),
                          generator=torch.Generator().manual_seed(0), max_steps=60)
    d = curve.to_dict()
    assert d["attack_changed"][0] == 0.0 and d["noise_changed"][0] == 0.0
    assert d["attack_changed"][1] > 0.5  # FGSM flips the preferred action at most steps
    assert d["attack_changed"][1] > d["noise_changed"][1]


def test_corrupt_cached_policy_is_retrained(tmp_path, caplog):  # type: ignore[no-untyped-def]
    import logging

    from advlab.experiments import policy_path
    from advlab.rl.dqn import POLICY_FILE

    cfg = DQNConfig(total_steps=200, learning_starts=100, eval_every=200, eval_episodes=1,
                    hidden=(8,), seed=5)
    first = get_or_train_policy("cartpole", cfg, tmp_path)
    entry = policy_path("cartpole", cfg, tmp_path)
    assert (entry / POLICY_FILE).is_file()
    assert policy_path("cartpole", DQNConfig(**{**cfg.__dict__, "lr": 2e-3}), tmp_path) != entry
    (entry / POLICY_FILE).write_text("{ not json")
    with caplog.at_level(logging.WARNING, logger="advlab.experiments.policies"):
        again = get_or_train_policy("cartpole", cfg, tmp_path)
    assert "corrupt" in caplog.text and again.seconds > 0
    assert torch.equal(first.q.net[0].weight, again.q.net[0].weight)
    assert get_or_train_policy("cartpole", cfg, tmp_path).seconds == 0.0

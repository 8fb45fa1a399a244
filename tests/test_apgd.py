"""APGD / APGD-T: the checkpoint schedule, strength, invariances, restarts, targeting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.attacks import APGD, APGDT, PGD
from advlab.attacks.apgd import apgd_checkpoints
from advlab.criteria import TargetedMisclassification
from advlab.threat import ThreatModel


def test_checkpoints_match_the_paper():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06): as in AutoAttack
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1) == [1]


@pytest.fixture(scope="module")
def digits_mlp(digits_train, digits_settings):  # type: ignore[no-untyped-def]
    from advlab.defenses import TrainConfig, fit
    from advlab.models import create_model

    torch.manual_seed(0)
    model = create_model("mlp", **digits_settings)
    fit(model, digits_train.images, digits_train.labels, TrainConfig(epochs=4, lr=3e-3, seed=0))
    return model.eval()


def test_apgd_at_least_as_strong_as_pgd_on_a_trained_model(digits_mlp, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=200).tensors()
    threat = ThreatModel("linf", 0.06)
    g = torch.Generator
    pgd = PGD(steps=30, random_init=True)(digits_mlp, x, y, threat=threat,
                                          generator=g().manual_seed(0))
    apgd = APGD(steps=30)(digits_mlp, x, y, threat=threat, generator=g().manual_seed(0))
    apgd_dlr = APGD(steps=30, loss="dlr")(digits_mlp, x, y, threat=threat,
                                          generator=g().manual_seed(0))
    assert 0.1 < pgd.success_rate < 0.95  # an informative budget
    assert apgd.success_rate >= pgd.success_rate - 0.01
    assert apgd_dlr.success_rate >= pgd.success_rate - 0.03
    # targeted over the top classes adds points on top of untargeted APGD
    apgdt = APGDT(steps=30, n_target_classes=3)(digits_mlp, x, y, threat=threat,
                                                generator=g().manual_seed(0))
    assert apgdt.success_rate >= apgd_dlr.success_rate - 0.01


class Scaled(nn.Module):
    def __init__(self, inner: nn.Module, factor: float) -> None:
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.factor


def test_dlr_is_invariant_to_logit_scaling(digits_mlp, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=60).tensors()
    threat = ThreatModel("linf", 0.06)
    a = APGD(steps=15, loss="dlr")(digits_mlp, x, y, threat=threat,
                                   generator=torch.Generator().manual_seed(1))
    b = APGD(steps=15, loss="dlr")(Scaled(digits_mlp, 50.0).eval(), x, y, threat=threat,
                                   generator=torch.Generator().manual_seed(1))
    assert int((a.success != b.success).sum()) <= 1


def test_early_stop_same_success_less_work(digits_mlp, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=80).tensors()
    threat = ThreatModel("l2", 0.5)
    full = APGD(steps=12)(digits_mlp, x, y, threat=threat, generator=torch.Generator().manual_seed(2))
    early = APGD(steps=12, early_stop=True)(digits_mlp, x, y, threat=threat,
                                            generator=torch.Generator().manual_seed(2))
    # per-sample trajectories are independent: stopping broken samples changes nothing else
    assert torch.equal(full.success, early.success)
    assert torch.equal(full.x_adv[~full.success], early.x_adv[~full.success])
    assert int(early.passes.sum()) < int(full.passes.sum())


def test_restarts_only_attack_unbroken_samples(digits_mlp, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=60).tensors()
    threat = ThreatModel("linf", 0.04)
    one = APGD(steps=5)(digits_mlp, x, y, threat=threat, generator=torch.Generator().manual_seed(3))
    three = APGD(steps=5, restarts=3)(digits_mlp, x, y, threat=threat,
                                      generator=torch.Generator().manual_seed(3))
    assert bool((three.success | ~one.success).all())
    assert bool((three.passes[one.success] == 6).all())
    assert bool((three.passes[~three.success] == 18).all())


def test_targeted_criterion_reaches_every_class_on_linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    x = torch.full((4, 1, 4, 4), 0.5)
    t = torch.arange(4)
    for atk in (APGD(steps=20, loss="ce"), APGDT(steps=20)):
        r = atk(model, x, TargetedMisclassification(t), threat=ThreatModel("linf", 1.0))
        assert bool(r.success.all()) and torch.equal(r.logits.argmax(1), t)


def test_apgdt_targets_the_top_classes_only_on_unbroken_points():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 5)).eval()
    x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    y = model(x).argmax(1)
    r = APGDT(steps=4, n_target_classes=3)(model, x, y, threat=ThreatModel("linf", 0.05),
                                           generator=torch.Generator().manual_seed(0))
    assert r.info["n_target_classes"] == 3
    # unbroken points ran all 3 targets (5 passes each), none ran more
    assert bool((r.passes[~r.success] == 15).all())
    assert bool((r.passes <= 15).all())


def test_bad_settings():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x, y = torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)
    for atk in (APGD(steps=0), APGD(restarts=0), APGD(loss="x"), APGD(rho=0.0),
                APGD(momentum=1.5), APGDT(n_target_classes=0)):
        with pytest.raises(ValueError):
            atk(model, x, y, threat=ThreatModel("linf", 0.1))

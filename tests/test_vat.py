"""Tests for advlab.defenses.vat: power iteration, LDS, the VAT objective, label selection."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.cli.cmd_defenses import select_labeled
from advlab.data import ImageDataset
from advlab.defenses import (
    VAT,
    ScheduledTrainConfig,
    TrainConfig,
    entropy,
    fit,
    vat_direction,
    vat_loss,
    vat_perturbation,
)
from advlab.models import create_model


def _softmax64(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("softmax", in_shape=(1, 2, 3), num_classes=4).double().eval()


def _kl_hessian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Exact Hessian of r -> KL(p(x) || p(x + r)) at r = 0 for one input ``x`` (1, C, H, W)."""
    with torch.no_grad():
        logp = F.log_softmax(model(x), dim=1)

    def kl(r: torch.Tensor) -> torch.Tensor:
        logq = F.log_softmax(model(x + r.view_as(x)), dim=1)
        return (logp.exp() * (logp - logq)).sum()

    return torch.autograd.functional.hessian(kl, torch.zeros(x.numel(), dtype=x.dtype))


def test_power_iteration_finds_the_top_eigenvector_of_the_kl_hessian() -> None:
    model = _softmax64()
    x = torch.rand(3, 1, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = vat_direction(model, x, xi=1e-4, iterations=40, generator=torch.Generator().manual_seed(1))
    for i in range(3):
        h = _kl_hessian(model, x[i:i + 1])
        evals, evecs = torch.linalg.eigh(h)
        assert evals[-1] > 1.5 * evals[-2]  # a well-separated top eigenvalue
        cos = float(torch.dot(d[i].flatten(), evecs[:, -1]).abs())
        assert cos > 0.999
        # and one iteration from a random start is already closer to it than chance
    d1 = vat_direction(model, x, xi=1e-4, iterations=1, generator=torch.Generator().manual_seed(1))
    assert d1.flatten(1).norm(dim=1).sub(1).abs().max() < 1e-9


def test_binary_logistic_model_direction_is_its_weight_after_one_iteration() -> None:
    """The KL Hessian of a logistic model is rank one, proportional to w w^T."""
    torch.manual_seed(0)
    m = create_model("logistic", in_shape=(1, 2, 3), num_classes=2).double().eval()
    x = torch.rand(5, 1, 2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    d = vat_direction(m, x, xi=1e-5, iterations=1, generator=torch.Generator().manual_seed(3))
    w = m.weight.flatten()
    w = w / w.norm()
    cos = (d.flatten(1) @ w).abs()
    assert torch.allclose(cos, torch.ones(5, dtype=torch.float64), atol=1e-6)


def test_perturbation_size_and_lds_properties() -> None:
    model = _softmax64()
    x = torch.rand(4, 1, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x0 = x.clone()
    g = torch.Generator().manual_seed(0)
    r = vat_perturbation(model, x, eps=0.7, generator=g)
    assert torch.allclose(r.flatten(1).norm(dim=1), torch.full((4,), 0.7, dtype=torch.float64))
    rinf = vat_perturbation(model, x, eps=0.1, norm="linf", generator=g)
    assert torch.allclose(rinf.abs(), torch.full_like(rinf, 0.1))
    assert float(vat_loss(model, x, eps=0.0, generator=g).detach()) == pytest.approx(0.0, abs=1e-12)
    lds = float(vat_loss(model, x, eps=0.7, xi=1e-4, iterations=5,
                         generator=torch.Generator().manual_seed(0)).detach())
    # the virtual adversarial direction beats random directions of the same size
    rnd = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    rnd = 0.7 * rnd / rnd.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    with torch.no_grad():
        kl_rand = F.kl_div(F.log_softmax(model(x + rnd), 1), F.log_softmax(model(x), 1),
                           reduction="batchmean", log_target=True)
    assert lds > float(kl_rand) > 0
    assert torch.equal(x, x0)
    assert all(p.grad is None for p in model.parameters())


def test_entropy_known_values() -> None:
    assert float(entropy(torch.zeros(3, 4))) == pytest.approx(math.log(4))
    assert float(entropy(torch.tensor([[100.0, 0.0, 0.0]]))) == pytest.approx(0.0, abs=1e-6)


def test_vat_objective_pass_counting_and_gradients() -> None:
    torch.manual_seed(0)
    m = create_model("mlp", in_shape=(1, 8, 8), num_classes=10, hidden=[16]).train()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    xu = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(4)
    loss, logits, passes = VAT(eps=1.0, iterations=2)(m, x, y, torch.Generator().manual_seed(0),
                                                       unlabeled=xu)
    assert passes == 4 + 6 * 3 and logits.shape == (4, 10)
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())
    _, _, p2 = VAT(eps=1.0, entropy_min=True)(m, x, y, torch.Generator(), unlabeled=xu)
    assert p2 == 4 + 6 * 3
    _, _, p3 = VAT(eps=1.0)(m, x, y, torch.Generator())
    assert p3 == 3  # supervised: per example, 1 power iteration + adversarial + clean passes


@pytest.mark.parametrize("make", [
    lambda: VAT(eps=-1.0), lambda: VAT(xi=0.0), lambda: VAT(iterations=0),
    lambda: VAT(alpha=-1.0), lambda: VAT(norm="l1"),
])
def test_bad_vat_settings(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        make().validate()


def test_select_labeled_is_balanced_and_seeded(digits_train: ImageDataset) -> None:
    labels = digits_train.labels
    a = select_labeled(labels, 50, 10, torch.Generator().manual_seed(0))
    b = select_labeled(labels, 50, 10, torch.Generator().manual_seed(0))
    c = select_labeled(labels, 50, 10, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.unique().numel() == 50
    assert torch.bincount(labels[a], minlength=10).tolist() == [5] * 10
    with pytest.raises(ValueError, match="exceeds"):
        select_labeled(labels, len(labels) + 10, 10, torch.Generator())
    with pytest.raises(ValueError, match="multiple"):
        select_labeled(labels, 55, 10, torch.Generator())


def test_semi_supervised_fit_counts_passes_and_uses_unlabelled_data(
    digits_train: ImageDataset, digits_test: ImageDataset
) -> None:
    """VAT with 20 labels on digits: the unlabelled data must help (a known VAT effect)."""
    chosen = select_labeled(digits_train.labels, 20, 10, torch.Generator().manual_seed(0))
    rest = torch.ones(len(digits_train), dtype=torch.bool)
    rest[chosen] = False
    xl, yl = digits_train.images[chosen], digits_train.labels[chosen]
    xu = digits_train.images[rest]
    test = (digits_test.images, digits_test.labels)

    def model() -> nn.Module:
        torch.manual_seed(0)
        return create_model("mlp", in_shape=(1, 8, 8), num_classes=10, hidden=[64],
                            mean=0.3, std=0.4)

    cfg = ScheduledTrainConfig(epochs=6, batch_size=20, lr=3e-3, seed=0, unlabeled_batch_size=128)
    semi = model()
    res = fit(semi, xl, yl, cfg, objective=VAT(eps=1.0), unlabeled=xu, test=test)
    steps = -(-xu.shape[0] // 128)
    assert res.history[0].passes == steps * 20 + xu.shape[0] * 2
    sup = model()
    # the same number of labelled batches, no unlabelled data
    fit(sup, xl, yl, TrainConfig(epochs=6 * steps, batch_size=20, lr=3e-3, seed=0))
    from advlab.defenses import accuracy

    acc_semi, acc_sup = res.history[-1].test_acc, accuracy(sup, *test)
    assert acc_semi is not None
    assert acc_semi > acc_sup + 0.03, (acc_semi, acc_sup)  # measured 80.0% vs 73.9%


def test_unlabelled_data_needs_a_semi_supervised_objective(digits_train: ImageDataset) -> None:
    torch.manual_seed(0)
    m = create_model("softmax", in_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ValueError, match="semi-supervised"):
        fit(m, digits_train.images[:20], digits_train.labels[:20], TrainConfig(),
            unlabeled=digits_train.images[20:40])

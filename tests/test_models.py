"""Tests for advlab.models: the registry, Normalize, and the math of each model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from advlab.models import (
    MODELS,
    LogisticRegression,
    Maxout,
    Normalize,
    RBFNetwork,
    SoftmaxRegression,
    available_models,
    confidence,
    create_model,
    training_loss,
)

SHAPES = [(1, 28, 28), (1, 8, 8)]

pytestmark = pytest.mark.usefixtures("no_network")


def _classes(name: str) -> int:
    return 2 if name == "logistic" else 10


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_lecture_models() -> None:
    assert {"softmax", "logistic", "mlp", "cnn", "strided-cnn", "maxout", "rbf"} <= set(available_models())
    assert available_models() == sorted(MODELS)


@pytest.mark.parametrize("shape", SHAPES, ids=["28x28", "8x8"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_returns_logits_per_example(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    k = _classes(name)
    model = create_model(name, in_shape=shape, num_classes=k).eval()
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(1))
    x[0] = 0.0  # both ends of the input range
    x[1] = 1.0
    with torch.no_grad():
        out = model(x)
        single = model(x[2:3])
    assert out.shape == (3, k)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # examples do not interact: a batch of one gives the same logits
    torch.testing.assert_close(single[0], out[2], rtol=1e-5, atol=1e-5)
    # differentiable w.r.t. the input (attacks need it)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg).sum(), xg)
    assert g.shape == x.shape and torch.isfinite(g).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_wrong_input_shape_raises_value_error(name: str) -> None:
    model = create_model(name, in_shape=(1, 8, 8), num_classes=_classes(name))
    with pytest.raises(ValueError, match=r"expects inputs of shape \(N, 1, 8, 8\)"):
        model(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="expects inputs of shape"):
        model(torch.rand(2, 64))


def test_unknown_model_name_lists_the_known_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet'") as info:
        create_model("resnet")
    for name in available_models():
        assert name in str(info.value)


def test_model_names_are_case_insensitive_and_settings_are_recorded() -> None:
    model = create_model("MLP", in_shape=(1, 8, 8), hidden=(16,))
    assert type(model) is MODELS["mlp"]
    assert model.advlab_config == {"name": "mlp",
                                   "settings": {"in_shape": [1, 8, 8], "hidden": [16]}}


def test_bad_settings_raise_value_error() -> None:
    with pytest.raises(ValueError, match="bad settings for model 'mlp'"):
        create_model("mlp", widths=(3,))
    with pytest.raises(ValueError, match=r"in_shape must be \(C, H, W\)"):
        create_model("softmax", in_shape=(8, 8))
    with pytest.raises(ValueError, match="binary"):
        create_model("logistic", num_classes=3)


# --------------------------------------------------------------------------- Normalize


def test_normalize_single_channel() -> None:
    x = torch.rand(4, 1, 3, 3)
    torch.testing.assert_close(Normalize(0.5, 0.25)(x), (x - 0.5) / 0.25)


def test_normalize_per_channel_4d_and_2d() -> None:
    mean, std = [0.1, 0.2, 0.3], [1.0, 2.0, 4.0]
    layer = Normalize(mean, std, channels=3)
    x = torch.rand(2, 3, 2, 2)
    out = layer(x)
    for c in range(3):
        torch.testing.assert_close(out[:, c], (x[:, c] - mean[c]) / std[c])
    flat = torch.rand(5, 3)
    torch.testing.assert_close(layer(flat), (flat - torch.tensor(mean)) / torch.tensor(std))
    # mean and std are buffers: they travel with state_dict (checkpoints) and .to(device)
    assert set(layer.state_dict()) == {"mean", "std"}


def test_normalize_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="positive"):
        Normalize(0.0, 0.0)
    with pytest.raises(ValueError, match="positive"):
        Normalize(0.0, [1.0, -1.0], channels=2)
    with pytest.raises(ValueError, match="1 or 3 values"):
        Normalize([0.1, 0.2], 1.0, channels=3)


def test_model_applies_its_normalization_first() -> None:
    model = SoftmaxRegression(in_shape=(1, 2, 2), num_classes=3, mean=0.5, std=0.25)
    x = torch.rand(6, 1, 2, 2)
    w, b = model.linear.weight.detach(), model.linear.bias.detach()
    expected = ((x - 0.5) / 0.25).flatten(1) @ w.t() + b
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)


# --------------------------------------------------------------------------- logistic regression


@pytest.mark.parametrize("mean", [0.0, 0.3])
def test_logistic_regression_softmax_equals_sigmoid(mean: float) -> None:
    torch.manual_seed(0)
    std = 0.5
    model = LogisticRegression(in_shape=(1, 3, 3), mean=mean, std=std)
    with torch.no_grad():
        model.linear.weight.normal_()
        model.linear.bias.fill_(0.7)
    assert model.weight.shape == (1, 3, 3)
    torch.testing.assert_close(model.weight, model.linear.weight.detach().reshape(1, 3, 3) / std)
    # with the normalization folded in, the bias in input space is b - w.mean
    b = 0.7 - float(model.weight.sum()) * mean
    x = torch.rand(8, 1, 3, 3)
    with torch.no_grad():
        out = model(x)
    z = (model.weight * x).sum(dim=(1, 2, 3)) + b
    torch.testing.assert_close(torch.softmax(out, dim=1)[:, 1], torch.sigmoid(z))
    torch.testing.assert_close(out[:, 1] - out[:, 0], z, rtol=1e-5, atol=1e-5)
    assert torch.allclose(out.sum(dim=1), torch.zeros(8), atol=1e-6)  # logits are (-z/2, z/2)


def test_logistic_regression_weight_is_the_input_gradient() -> None:
    torch.manual_seed(1)
    model = LogisticRegression(in_shape=(1, 4, 4), mean=0.2, std=0.3)
    x = torch.rand(5, 1, 4, 4, requires_grad=True)
    out = model(x)
    (g,) = torch.autograd.grad((out[:, 1] - out[:, 0]).sum(), x)
    torch.testing.assert_close(g, model.weight.expand(5, 1, 4, 4))


# --------------------------------------------------------------------------- maxout


def test_maxout_is_the_max_over_linear_pieces() -> None:
    torch.manual_seed(2)
    layer = Maxout(3, 2, pieces=4)
    x = torch.randn(5, 3)
    w, b = layer.linear.weight.detach(), layer.linear.bias.detach()
    expected = torch.empty(5, 2)
    for j in range(2):
        rows = range(j * 4, (j + 1) * 4)
        expected[:, j] = torch.stack([x @ w[r] + b[r] for r in rows], dim=1).amax(dim=1)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected)


# --------------------------------------------------------------------------- RBF network


def _rbf() -> RBFNetwork:
    torch.manual_seed(3)
    model = RBFNetwork(in_shape=(1, 2, 3), num_classes=4)
    with torch.no_grad():
        model.templates.copy_(torch.rand(4, 6))
        model.log_beta.copy_(torch.log(torch.tensor([0.5, 1.0, 2.0, 3.0])))
    return model


def test_rbf_default_beta_and_output_kind() -> None:
    model = RBFNetwork(in_shape=(1, 2, 3), num_classes=4)
    assert model.output_kind == "logodds"
    torch.testing.assert_close(model.log_beta.exp(), torch.full((4,), 1.0 / (0.05 * 6)))
    assert SoftmaxRegression.output_kind == "logits"


def test_rbf_presence_is_gaussian_of_template_distance() -> None:
    model = _rbf()
    x = torch.rand(7, 1, 2, 3, generator=torch.Generator().manual_seed(4))
    beta = torch.tensor([0.5, 1.0, 2.0, 3.0])
    w = model.templates.detach()
    expected = torch.empty(7, 4)
    for i in range(7):
        for c in range(4):
            d2 = float(((x[i].flatten() - w[c]) ** 2).sum())
            expected[i, c] = math.exp(-float(beta[c]) * d2)
    with torch.no_grad():
        p = model.presence(x)
        logits = model(x)
        d2 = model.sq_distances(x)
    torch.testing.assert_close(d2, ((x.flatten(1)[:, None] - w[None]) ** 2).sum(-1))
    torch.testing.assert_close(p, expected, rtol=1e-4, atol=1e-6)
    # the forward pass returns the log-odds log p - log(1 - p)
    torch.testing.assert_close(logits, torch.log(expected) - torch.log1p(-expected),
                               rtol=1e-4, atol=1e-4)
    # confidence of a log-odds model is the presence of the predicted class
    torch.testing.assert_close(confidence(model, logits), expected.amax(dim=1),
                               rtol=1e-4, atol=1e-6)


def test_training_loss_matches_hand_computation() -> None:
    model = _rbf()
    x = torch.rand(5, 1, 2, 3)
    y = torch.tensor([0, 1, 2, 3, 0])
    with torch.no_grad():
        logits = model(x)
    p = torch.sigmoid(logits)
    onehot = F.one_hot(y, 4).float()
    bce = -(onehot * torch.log(p) + (1 - onehot) * torch.log1p(-p)).sum() / 5
    torch.testing.assert_close(training_loss(model, logits, y), bce, rtol=1e-4, atol=1e-5)
    soft = SoftmaxRegression(in_shape=(1, 2, 3), num_classes=4)
    z = torch.randn(5, 4)
    ce = -torch.log_softmax(z, dim=1)[torch.arange(5), y].mean()
    torch.testing.assert_close(training_loss(soft, z, y), ce)
    torch.testing.assert_close(confidence(soft, z), torch.softmax(z, 1).amax(1))

"""Gradient-masking checks: fire on models that mask or randomize, silent on plain models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.evaluation.cascade import cascade
from advlab.evaluation.checks import check_black_box, check_model, check_threat
from advlab.threat import ThreatModel


class Quantized(nn.Module):
    """A non-differentiable input layer (rounding to 4 levels) in front of a model."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 3) / 3)


class Noisy(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.g = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + 0.05 * torch.randn(x.shape, generator=self.g))


@pytest.fixture(scope="module")
def digits_cnn(digits_train, digits_settings):  # type: ignore[no-untyped-def]
    from advlab.defenses import TrainConfig, fit
    from advlab.models import create_model

    torch.manual_seed(0)
    model = create_model("cnn", **digits_settings)
    fit(model, digits_train.images, digits_train.labels, TrainConfig(epochs=2, lr=2e-3, seed=0))
    return model.eval()


def test_silent_on_a_plain_cnn(digits_cnn, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=64).tensors()
    assert check_model(digits_cnn, x, y) == []


def test_silent_on_softmax_regression(trained_softmax, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=64).tensors()
    assert check_model(trained_softmax, x, y) == []


def test_quantizing_input_layer_fires_zero_gradients(digits_cnn, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=64).tensors()
    codes = [w.code for w in check_model(Quantized(digits_cnn).eval(), x, y)]
    assert "zero_gradients" in codes


def test_randomized_probabilities_and_log_probabilities(trained_softmax, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=32).tensors()
    assert "randomized" in [w.code for w in check_model(Noisy(trained_softmax).eval(), x, y)]
    probs = nn.Sequential(trained_softmax, nn.Softmax(dim=1)).eval()
    assert "probabilities" in [w.code for w in check_model(probs, x, y)]
    logp = nn.Sequential(trained_softmax, nn.LogSoftmax(dim=1)).eval()
    assert "log_probabilities" in [w.code for w in check_model(logp, x, y)]


class StraightThroughTimes(nn.Module):
    """Forward: the model; backward: a gradient 1000x too small (a replaced gradient)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = x * 1e-3 + (x - x * 1e-3).detach()
        return self.inner(xs)


def test_gradient_that_does_not_describe_the_model(trained_softmax, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=32).tensors()
    codes = [w.code for w in check_model(StraightThroughTimes(trained_softmax).eval(), x, y)]
    assert codes == ["gradient_mismatch"]


def test_threat_and_black_box_checks():
    x = torch.rand(4, 1, 4, 4) * 0.5
    threat = ThreatModel("linf", 0.1)
    assert check_threat(threat, x + 0.05, x) == []
    w = check_threat(threat, x + torch.tensor([0.05, 0.2, 0.05, 0.05]).reshape(4, 1, 1, 1), x)
    assert [v.code for v in w] == ["outside_threat_model"] and w[0].details["points"] == 1
    assert check_black_box(["apgd", "square"], [False, True], [10, 0]) == []
    assert check_black_box(["square", "apgd"], [True, False], [3, 2]) == []  # black box first
    assert [v.code for v in check_black_box(["apgd", "square"], [False, True], [10, 2])] == [
        "black_box_beats_white_box"]


def test_cascade_flags_masking_on_quantized_model_not_on_plain(digits_cnn, digits_test):  # type: ignore[no-untyped-def]
    x, y = digits_test.subset(limit=40).tensors()
    threat = ThreatModel("linf", 0.3)
    from advlab.attacks import APGD, Square

    stages = [("apgd-ce", APGD(steps=10, early_stop=True)), ("square", Square(queries=150))]
    masked = cascade(Quantized(digits_cnn).eval(), x, y, stages, threat, batch_size=20)
    codes = {w.code for w in masked.warnings}
    assert {"zero_gradients", "black_box_beats_white_box"} <= codes
    plain = cascade(digits_cnn, x, y, stages, threat, batch_size=20)
    assert plain.warnings == []

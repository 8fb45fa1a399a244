"""Model registry: ``create_model(name, **settings)``."""

from __future__ import annotations

from typing import Any

from torch import nn

from advlab.models.zoo import (
    MLP,
    LogisticRegression,
    MadryCNN,
    MaxoutMLP,
    RBFNetwork,
    SoftmaxRegression,
    StridedCNN,
)

__all__ = ["MODELS", "create_model", "available_models"]

MODELS: dict[str, type[nn.Module]] = {
    "softmax": SoftmaxRegression,
    "logistic": LogisticRegression,
    "mlp": MLP,
    "cnn": MadryCNN,
    "strided-cnn": StridedCNN,
    "maxout": MaxoutMLP,
    "rbf": RBFNetwork,
}


def available_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(MODELS)


def create_model(name: str, **settings: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: one of :func:`available_models`.
        **settings: constructor settings, e.g. ``in_shape=(1, 28, 28)``,
            ``num_classes=10``, ``mean``, ``std``, ``hidden``.

    The settings are kept on the model as ``model.advlab_config`` so a
    checkpoint can rebuild it.
    """
    key = str(name).lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; use one of {available_models()}")
    try:
        model = MODELS[key](**settings)
    except TypeError as e:
        raise ValueError(f"bad settings for model {name!r}: {e}") from None
    model.advlab_config = {"name": key, "settings": _jsonable(settings)}  # type: ignore[assignment]
    return model


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v

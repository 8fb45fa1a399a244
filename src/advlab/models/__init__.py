"""Models: a registry of the lecture's classifiers, all returning logits on [0, 1] inputs."""

from advlab.models.ensemble import EnsembleModel
from advlab.models.layers import Normalize
from advlab.models.registry import MODELS, available_models, create_model
from advlab.models.zoo import (
    MLP,
    LogisticRegression,
    MadryCNN,
    Maxout,
    MaxoutMLP,
    RBFNetwork,
    SoftmaxRegression,
    StridedCNN,
    confidence,
    training_loss,
)

__all__ = [
    "MODELS", "available_models", "create_model", "EnsembleModel", "Normalize", "MLP", "LogisticRegression",
    "MadryCNN", "Maxout", "MaxoutMLP", "RBFNetwork", "SoftmaxRegression", "StridedCNN", "confidence",
    "training_loss",
]

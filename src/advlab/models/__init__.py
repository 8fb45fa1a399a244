"""Models: a registry of the lecture's classifiers, all returning logits on [0, 1] inputs."""

from advlab.models.ensemble import EnsembleModel
from advlab.models.external import ModelLoadError, inspect_model_file, load_external_model
from advlab.models.layers import Normalize
from advlab.models.pretrained import PRETRAINED, efficientnet_lite0
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
    "ModelLoadError", "PRETRAINED", "efficientnet_lite0", "inspect_model_file", "load_external_model",
    "MODELS", "available_models", "create_model", "EnsembleModel", "Normalize", "MLP", "LogisticRegression",
    "MadryCNN", "Maxout", "MaxoutMLP", "RBFNetwork", "SoftmaxRegression", "StridedCNN", "confidence",
    "training_loss",
]

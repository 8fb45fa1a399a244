"""Models of the lecture's transfer experiments: half-set MLPs and scikit-learn models."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from advlab.experiments.cache import cache_key
from advlab.experiments.context import ExperimentContext
from advlab.experiments.recipes import half_mlp_recipe
from advlab.io import atomic_write_bytes
from advlab.models.sklearn import SklearnClassifier, create_sklearn_model
from advlab.models.sklearn_store import load_sklearn_model, sklearn_to_bytes

__all__ = ["SKLEARN_TRAIN", "half_mlp", "sklearn_model"]

log = logging.getLogger(__name__)

#: training examples of the scikit-learn models (full / quick)
SKLEARN_TRAIN = {False: 5000, True: 2000}


def half_mlp(ctx: ExperimentContext, half: int) -> nn.Module:
    """An MLP trained on one of two disjoint halves of a training slice (cached)."""
    recipe = half_mlp_recipe(half, len(ctx.train), ctx.quick, ctx.seed)
    return ctx.train_recipe(recipe, meta={"half": half}).model


def sklearn_model(ctx: ExperimentContext, name: str) -> SklearnClassifier:
    """The scikit-learn model ``name`` fitted on the first training images (cached).

    The cache file is safetensors arrays + JSON (:mod:`advlab.models.sklearn_store`), never
    a pickle: a file planted in the cache directory is refused and the model refitted.
    """
    n = min(SKLEARN_TRAIN[ctx.quick], len(ctx.train))
    model = create_sklearn_model(name)
    key = cache_key({"sklearn": name, "settings": model.settings(), "dataset": ctx.train.name, "n": n})
    path = Path(ctx.cache_dir) / f"{ctx.train.name}-sk-{name}-{key}.safetensors"
    if path.is_file():
        try:
            return load_sklearn_model(path, expect_settings=model.settings())
        except ValueError as e:
            log.warning("ignoring cached scikit-learn model (%s); refitting", e)
    ctx.progress(f"training scikit-learn {name} on {n} {ctx.train.name} images")
    x, y = ctx.train.subset(limit=n).tensors()
    model.fit(x, y)
    atomic_write_bytes(path, sklearn_to_bytes(model))
    return model

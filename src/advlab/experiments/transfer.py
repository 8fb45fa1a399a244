"""Models of the lecture's transfer experiments: half-set MLPs and scikit-learn models."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

from torch import nn

from advlab.experiments.cache import cache_key
from advlab.experiments.context import ExperimentContext
from advlab.experiments.recipes import half_mlp_recipe
from advlab.io import atomic_write_bytes
from advlab.models.sklearn import SklearnClassifier, create_sklearn_model

__all__ = ["SKLEARN_TRAIN", "half_mlp", "sklearn_model"]

log = logging.getLogger(__name__)

#: training examples of the scikit-learn models (full / quick)
SKLEARN_TRAIN = {False: 5000, True: 2000}


def half_mlp(ctx: ExperimentContext, half: int) -> nn.Module:
    """An MLP trained on one of two disjoint halves of a training slice (cached)."""
    recipe = half_mlp_recipe(half, len(ctx.train), ctx.quick, ctx.seed)
    return ctx.train_recipe(recipe, meta={"half": half}).model


def sklearn_model(ctx: ExperimentContext, name: str) -> SklearnClassifier:
    """The scikit-learn model ``name`` fitted on the first training images, cached as a pickle.

    The pickle is our own cache file (keyed like the model cache, written atomically).
    """
    n = min(SKLEARN_TRAIN[ctx.quick], len(ctx.train))
    model = create_sklearn_model(name)
    key = cache_key({"sklearn": name, "settings": model.settings(), "dataset": ctx.train.name, "n": n})
    path = Path(ctx.cache_dir) / f"{ctx.train.name}-sk-{name}-{key}.pkl"
    if path.is_file():
        try:
            with path.open("rb") as f:
                cached = pickle.load(f)  # noqa: S301 - our own cache file, written below
            if isinstance(cached, SklearnClassifier):
                return cached
            log.warning("ignoring cached model %s: not a scikit-learn classifier", path)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as e:
            log.warning("ignoring corrupt cached model %s (%s); refitting", path, e)
    ctx.progress(f"training scikit-learn {name} on {n} {ctx.train.name} images")
    x, y = ctx.train.subset(limit=n).tensors()
    model.fit(x, y)
    atomic_write_bytes(path, pickle.dumps(model))
    return model

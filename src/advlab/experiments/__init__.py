"""Experiments: the lecture's model recipes, one model cache, and experiments that train.

Layer 5: may import data, models, attacks, defenses, evaluation, physical, rl, analysis
(never reporting or cli). Everything returns data; figures and HTML live in reporting.

* :func:`get_or_train` (a :class:`Recipe` -> a trained model, keyed by a versioned hash,
  atomic, resumable) and :func:`get_or_train_policy` (the same for DQN policies);
* :data:`MODEL_RECIPES` / :func:`lecture_recipe`: the lecture's models as plain data;
* :class:`ExperimentContext`: data, cached models and budgets shared by the experiments;
* :class:`PhotoSet` / :func:`load_photo_set`: the ImageNet model and photos of the photo sections.
"""

from advlab.experiments.cache import RECIPE_VERSION, Recipe, TrainedModel, cache_key, get_or_train, init_model
from advlab.experiments.context import ExperimentContext
from advlab.experiments.photos import ENABLE_PHOTOS, PhotoSet, PhotosUnavailable, load_photo_set
from advlab.experiments.policies import get_or_train_policy, policy_path
from advlab.experiments.recipes import MODEL_RECIPES, SigmoidObjective, lecture_recipe

__all__ = ["RECIPE_VERSION", "Recipe", "TrainedModel", "cache_key", "get_or_train", "init_model",
           "ExperimentContext", "get_or_train_policy", "policy_path", "MODEL_RECIPES",
           "SigmoidObjective", "lecture_recipe", "ENABLE_PHOTOS", "PhotoSet", "PhotosUnavailable",
           "load_photo_set"]

"""Analyses of why adversarial examples exist (the lecture's experiments as functions).

Every function takes models and data and returns a dataclass; plotting lives in
:mod:`advlab.reporting.figures_analysis`, files in ``advlab analyze``.
"""

from advlab.analysis.class_sweep import ClassSweep, GradientAscent, class_sweep, gradient_ascent
from advlab.analysis.cross_section import (
    CrossSection,
    activation_patterns,
    count_linear_pieces,
    cross_section,
    fgsm_direction,
    random_sign_direction,
)
from advlab.analysis.decision_map import MAP_KINDS, DecisionMaps, decision_maps, map_directions
from advlab.analysis.generative import (
    GenerativeComparison,
    MixtureFit,
    bimodal_data,
    fit_mixture,
    generative_comparison,
)
from advlab.analysis.linear import (
    LogisticSignResult,
    UniversalSignResult,
    linear_weights,
    logistic_sign_attack,
    universal_sign_perturbation,
)
from advlab.analysis.model_based import ModelBasedResult, fit_regressor, mean_sine, model_based_optimization
from advlab.analysis.noise import NoiseLevel, NoiseResult, gaussian_noise, noise_classification
from advlab.analysis.rbf import PUBLISHED_FGSM, FGSMRow, fgsm_comparison
from advlab.analysis.same_norm import SameNormResult, nearest_neighbour, same_norm_perturbations
from advlab.analysis.subspace import SubspaceResult, adversarial_subspace, gaas_directions

__all__ = [
    "ClassSweep", "GradientAscent", "class_sweep", "gradient_ascent",
    "CrossSection", "activation_patterns", "count_linear_pieces", "cross_section",
    "fgsm_direction", "random_sign_direction",
    "MAP_KINDS", "DecisionMaps", "decision_maps", "map_directions",
    "GenerativeComparison", "MixtureFit", "bimodal_data", "fit_mixture", "generative_comparison",
    "LogisticSignResult", "UniversalSignResult", "linear_weights", "logistic_sign_attack",
    "universal_sign_perturbation",
    "ModelBasedResult", "fit_regressor", "mean_sine", "model_based_optimization",
    "NoiseLevel", "NoiseResult", "gaussian_noise", "noise_classification",
    "PUBLISHED_FGSM", "FGSMRow", "fgsm_comparison",
    "SameNormResult", "nearest_neighbour", "same_norm_perturbations",
    "SubspaceResult", "adversarial_subspace", "gaas_directions",
]

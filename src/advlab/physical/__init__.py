"""Adversarial examples in the physical world: destruction rate and its attack set.

The camera-like transforms live in :mod:`advlab.transforms` and EOT/ILLC in
:mod:`advlab.attacks`; they are re-exported here for ``from advlab.physical import ...``.

References:
    Kurakin, Goodfellow & Bengio, "Adversarial examples in the physical world",
    arXiv:1607.02533, 2016. Athalye, Engstrom, Ilyas & Kwok, "Synthesizing
    Robust Adversarial Examples", ICML 2018.
"""

from advlab.attacks.eot import EOT
from advlab.attacks.illc import ILLC, least_likely_class
from advlab.physical.defaults import PHYSICAL_ATTACKS, physical_attacks
from advlab.physical.destruction import (
    DestructionRate,
    DestructionReport,
    DestructionRow,
    destruction_experiment,
    destruction_rate,
    destruction_rate_from_predictions,
)
from advlab.transforms import (
    JPEG,
    TRANSFORMS,
    Affine,
    BrightnessContrast,
    Compose,
    GaussianBlur,
    GaussianNoise,
    Identity,
    Quantize,
    Transform,
    create_transform,
    print_and_photograph,
    standard_transforms,
)

__all__ = [
    "Transform", "Identity", "Quantize", "BrightnessContrast", "GaussianBlur", "GaussianNoise",
    "JPEG", "Affine", "Compose", "print_and_photograph", "TRANSFORMS", "create_transform",
    "standard_transforms", "ILLC", "EOT", "least_likely_class", "DestructionRate",
    "destruction_rate", "destruction_rate_from_predictions", "DestructionRow", "DestructionReport",
    "destruction_experiment", "PHYSICAL_ATTACKS", "physical_attacks",
]

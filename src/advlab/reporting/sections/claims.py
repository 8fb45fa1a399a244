"""Lecture sections of :mod:`advlab.experiments.claims` (registered with @section): the X's and
O's slide, linear vs deep adversarial training, and where to put the perturbation."""

from __future__ import annotations

import advlab.experiments.claims  # noqa: F401 - registers the three analyses
import advlab.reporting.figures_claims  # noqa: F401 - registers their figures
from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section
from advlab.reporting.sections.analysis import analysis_section

__all__ = ["claims_xs_and_os_section", "claims_linear_vs_deep_at_section", "claims_perturb_layer_section"]


@section("claims_xs_and_os", "X's and O's: adversarial examples from overfitting or from linearity?")
def claims_xs_and_os_section(ctx: LectureContext) -> Section:
    """The X's and O's toy (``advlab analyze xs-and-os``) as a section."""
    return analysis_section("xs-and-os", ctx)


@section("claims_linear_vs_deep_at",
         "Adversarial training: a linear model cannot be made robust, a deep one can")
def claims_linear_vs_deep_at_section(ctx: LectureContext) -> Section:
    """The same FGSM adversarial training for softmax and maxout (``advlab analyze linear-vs-deep-at``)."""
    return analysis_section("linear-vs-deep-at", ctx)


@section("claims_perturb_layer", "Where to put the perturbation: input, hidden layer or logits")
def claims_perturb_layer_section(ctx: LectureContext) -> Section:
    """FGSM-AT at the input, a hidden layer or the logits (``advlab analyze perturb-layer``)."""
    return analysis_section("perturb-layer", ctx)

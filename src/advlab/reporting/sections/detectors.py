"""Lecture section of :mod:`advlab.experiments.detectors` (registered with @section)."""

from __future__ import annotations

from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section
from advlab.reporting.sections.analysis import analysis_section

__all__ = ["detectors_section"]


@section("detectors", "Detecting adversarial examples, and the adaptive attack that bypasses the detectors")
def detectors_section(ctx: LectureContext) -> Section:
    """The detectors experiment (``advlab analyze detectors``) as a section."""
    return analysis_section("detectors", ctx)

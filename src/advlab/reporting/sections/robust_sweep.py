"""Lecture section of :mod:`advlab.experiments.robust_sweep` (registered with @section)."""

from __future__ import annotations

from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section
from advlab.reporting.sections.analysis import analysis_section

__all__ = ["robust_class_sweep_section"]


@section("robust_class_sweep", "After adversarial training: does optimising towards a class make that class?")
def robust_class_sweep_section(ctx: LectureContext) -> Section:
    """The robust class sweep (``advlab analyze robust-class-sweep``) as a section."""
    return analysis_section("robust-class-sweep", ctx)

"""Lecture section of :mod:`advlab.experiments.text`: adversarial and virtual adversarial
training for text. Without the corpus or the ``text`` extra it renders a one-line note."""

from __future__ import annotations

import advlab.experiments.text  # noqa: F401 - registers the analysis
from advlab.analysis.text import TextUnavailable
from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section
from advlab.reporting.sections.analysis import optional_analysis_section

__all__ = ["text_vat_section"]


@section("text_vat", "Virtual adversarial training for text: perturbing word embeddings")
def text_vat_section(ctx: LectureContext) -> Section:
    """``advlab analyze text-vat`` as a section, or the note on how to install its data."""
    return optional_analysis_section("text-vat", "text_vat", ctx, TextUnavailable)

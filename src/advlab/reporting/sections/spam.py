"""Lecture section of :mod:`advlab.experiments.spam`: evading spam detectors by adding features.

Without the corpora (Debian ``r-cran-kernlab``, ``python3-pattern``) or the ``rdata`` package
the section renders a one-line note on how to enable it.
"""

from __future__ import annotations

import advlab.experiments.spam  # noqa: F401 - registers the analysis
import advlab.reporting.figures_spam  # noqa: F401 - registers its figures
from advlab.analysis.spam import SpamDataUnavailable
from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section
from advlab.reporting.sections.analysis import optional_analysis_section

__all__ = ["spam_evasion_section"]


@section("spam_evasion", "Spam filters, fooled by adding words: the add-only attack on binary features")
def spam_evasion_section(ctx: LectureContext) -> Section:
    """``advlab analyze spam-evasion`` as a section, or the note on how to install the corpora."""
    return optional_analysis_section("spam-evasion", "spam_evasion", ctx, SpamDataUnavailable)

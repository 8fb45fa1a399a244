"""The registry of lecture sections: :func:`section` adds one, :data:`SECTIONS` lists them.

Section modules (:mod:`advlab.reporting.sections`) import this module to register
themselves; :mod:`advlab.reporting.lecture` imports them and runs what is
registered. Neither imports the other back, so the report has no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable

from advlab.experiments import ExperimentContext
from advlab.reporting.html import Section

__all__ = ["LectureContext", "SectionFn", "SECTIONS", "section"]

#: the context every section receives: data, cached trained models, budget
#: (:class:`advlab.experiments.ExperimentContext`; the models' recipes are
#: :data:`advlab.experiments.MODEL_RECIPES`)
LectureContext = ExperimentContext

SectionFn = Callable[[LectureContext], Section]
#: registered sections in report order: (key, title, function)
SECTIONS: list[tuple[str, str, SectionFn]] = []


def section(key: str, title: str) -> Callable[[SectionFn], SectionFn]:
    """Register a report section (decorator).

    Args:
        key: the section's id (also its template ``templates/sections/<key>.html.j2``).
        title: the heading shown in the report.

    Returns:
        A decorator that registers the function and returns it unchanged.
    """

    def deco(fn: SectionFn) -> SectionFn:
        SECTIONS.append((key, title, fn))
        return fn

    return deco

"""The ``advlab lecture`` report: one function per section, one template per section.

A section is registered with :func:`~advlab.reporting.registry.section`; it receives the shared
:class:`LectureContext` (data, cached trained models, budget), runs an experiment
(library code that returns data), draws its figures and returns a
:class:`~advlab.reporting.html.Section`. Its template is
``templates/sections/<key>.html.j2``. Later capabilities add a function and a
template, nothing else.
"""

from __future__ import annotations

import time

from advlab.experiments import MODEL_RECIPES
from advlab.reporting.dataset_notes import dataset_note
from advlab.reporting.html import Section
from advlab.reporting.registry import SECTIONS, LectureContext, SectionFn, section

__all__ = ["LectureContext", "SECTIONS", "SectionFn", "section", "run_sections", "MODEL_RECIPES",
           "load_sections"]


def load_sections() -> None:
    """Import the section modules (each registers its sections with :func:`section`)."""
    import advlab.reporting.sections  # noqa: F401


def run_sections(ctx: LectureContext, only: list[str] | None = None) -> list[Section]:
    """Compute every registered section (or those in ``only``) in order."""
    load_sections()
    out = []
    keys = [k for k, _, _ in SECTIONS]
    for k in only or []:
        if k not in keys:
            raise ValueError(f"unknown section {k!r}; sections are {keys}")
    for key, title, fn in SECTIONS:
        if only and key not in only:
            continue
        ctx.progress(f"section: {title}")
        t0 = time.perf_counter()
        s = fn(ctx)
        s.key, s.title, s.seconds = key, title, time.perf_counter() - t0
        note = dataset_note(key, ctx.train.name)
        if note is not None:
            s.notes.append(note)
        out.append(s)
    return out

"""Lecture sections on real photographs (:mod:`advlab.experiments.photo_attacks`).

Without the ``imagenet`` extra each section renders a one-line note saying how to enable it.
"""

from __future__ import annotations

from advlab.experiments import PhotosUnavailable
from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section
from advlab.reporting.sections.analysis import optional_analysis_section

__all__ = ["photo_section", "photo_panda_section", "photo_attacks_section", "photo_class_direction_section"]


def photo_section(name: str, key: str, ctx: LectureContext) -> Section:
    """The analysis ``name`` as section ``key``, or the one-line note when photos are missing."""
    return optional_analysis_section(name, key, ctx, PhotosUnavailable)


@section("photo_panda", "The panda, for real: an ImageNet photo below one 8-bit level")
def photo_panda_section(ctx: LectureContext) -> Section:
    return photo_section("panda", "photo_panda", ctx)


@section("photo_attacks", "FGSM and PGD on real photographs")
def photo_attacks_section(ctx: LectureContext) -> Section:
    return photo_section("photo-attacks", "photo_attacks", ctx)


@section("photo_class_direction", "One class's direction fools many photos (goldfish to daisy)")
def photo_class_direction_section(ctx: LectureContext) -> Section:
    return photo_section("class-direction", "photo_class_direction", ctx)

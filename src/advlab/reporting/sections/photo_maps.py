"""Lecture sections on real photographs (:mod:`advlab.experiments.photo_maps`): cross sections,
decision maps, noise and the print-and-photograph destruction rate.

Without the ``imagenet`` extra each section renders a one-line note saying how to enable it.
"""

from __future__ import annotations

from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section
from advlab.reporting.sections.photo_attacks import photo_section

__all__ = ["photo_cross_section_section", "photo_decision_map_section", "photo_noise_section",
           "photo_physical_section"]


@section("photo_cross_section", "Linear pieces on a real photo: logits along FGSM and random directions")
def photo_cross_section_section(ctx: LectureContext) -> Section:
    return photo_section("photo-cross-section", "photo_cross_section", ctx)


@section("photo_decision_map", "Decision maps around a real photo")
def photo_decision_map_section(ctx: LectureContext) -> Section:
    return photo_section("photo-decision-map", "photo_decision_map", ctx)


@section("photo_noise", "Noise through an ImageNet model: which class owns noise space?")
def photo_noise_section(ctx: LectureContext) -> Section:
    return photo_section("photo-noise", "photo_noise", ctx)


@section("photo_physical", "Print and photograph: destruction rate on ImageNet photos")
def photo_physical_section(ctx: LectureContext) -> Section:
    return photo_section("photo-physical", "photo_physical", ctx)

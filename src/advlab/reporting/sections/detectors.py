"""Lecture sections of :mod:`advlab.experiments.detectors` (placeholder; registers with @section)."""

"""Lecture sections of :mod:`advlab.experiments.photo_maps` (placeholder; registers with @section)."""

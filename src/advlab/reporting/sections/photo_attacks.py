"""Lecture sections of :mod:`advlab.experiments.photo_attacks` (placeholder; registers with @section)."""

"""Lecture sections of :mod:`advlab.experiments.text` (placeholder; registers with @section)."""

"""Lecture sections of :mod:`advlab.experiments.spam` (placeholder; registers with @section)."""

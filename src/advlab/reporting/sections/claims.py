"""Lecture sections of :mod:`advlab.experiments.claims` (placeholder; registers with @section)."""

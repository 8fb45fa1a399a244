"""Figures of :mod:`advlab.experiments.claims` (placeholder; registers with register_figures)."""

"""Figures of :mod:`advlab.experiments.spam` (placeholder; registers with register_figures)."""

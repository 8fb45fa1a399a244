"""Figures of :mod:`advlab.experiments.photo_attacks` (placeholder; registers with register_figures)."""

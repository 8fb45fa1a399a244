"""Figures of :mod:`advlab.experiments.photo_maps` (placeholder; registers with register_figures)."""

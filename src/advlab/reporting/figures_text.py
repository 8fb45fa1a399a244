"""Figures of :mod:`advlab.experiments.text` (placeholder; registers with register_figures)."""

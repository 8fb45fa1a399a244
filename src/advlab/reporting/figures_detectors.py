"""Figures of :mod:`advlab.experiments.detectors` (placeholder; registers with register_figures)."""

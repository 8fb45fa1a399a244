"""Lecture experiments (placeholder; registers its analyses with register_analysis)."""

"""Figures and the HTML report (the only library modules that draw)."""

"""CLI commands for analysis (register on `advlab.cli.app.app`)."""

from __future__ import annotations

"""CLI commands for evaluation (register on `advlab.cli.app.app`)."""

from __future__ import annotations

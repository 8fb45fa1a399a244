"""CLI commands for physical (register on `advlab.cli.app.app`)."""

from __future__ import annotations

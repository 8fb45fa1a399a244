"""CLI commands for defenses (register on `advlab.cli.app.app`)."""

from __future__ import annotations

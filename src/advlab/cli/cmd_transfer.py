"""CLI commands for transfer (register on `advlab.cli.app.app`)."""

from __future__ import annotations

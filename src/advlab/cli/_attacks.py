"""Build attacks from command-line options through the registry; nothing is silently dropped."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer

from advlab.cli._common import UsageError

__all__ = ["SetOpt", "build_attack", "parse_settings", "OPTION_FLAGS"]

#: attack setting -> the CLI flag that sets it
OPTION_FLAGS = {"steps": "--steps", "step_size": "--step-size", "rel_step_size": "--rel-step-size",
                "restarts": "--restarts", "random_init": "--random-init", "early_stop": "--early-stop",
                "loss": "--loss"}

SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Any other attack setting as NAME=VALUE (JSON value, e.g. --set queries=1000); "
                  "repeatable. See `advlab info --attack NAME`.")]


def parse_settings(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``["queries=1000", "loss=dlr"]`` -> ``{"queries": 1000, "loss": "dlr"}`` (JSON values, else strings)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise UsageError(f"--set takes NAME=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key in out:
            raise UsageError(f"--set {key} given twice")
        out[key] = value
    return out


def build_attack(name: str, options: Mapping[str, Any], *, extra: Sequence[str] | None = None,
                 defaults: Mapping[str, Any] | None = None, norm: str | None = None) -> Any:
    """The registered attack ``name`` with the options the user gave.

    Args:
        name: registered name or alias.
        options: setting -> value of the dedicated flags (``None``: not given).
        extra: ``--set NAME=VALUE`` pairs.
        defaults: the command's own defaults (e.g. early stop for evaluation), applied
            only where the attack takes that setting and the user did not set it.
        norm: the threat model's norm; one the attack does not take is a usage error here,
            before any data or model is loaded.

    Raises:
        UsageError: unknown attack, or a setting the attack does not take (one line
            naming the option and the attack's real settings).
    """
    from advlab.attacks.registry import get_entry

    try:
        entry = get_entry(name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    given = {k: v for k, v in options.items() if v is not None}
    more = parse_settings(extra)
    both = sorted(set(given) & set(more))
    if both:
        raise UsageError(f"{OPTION_FLAGS.get(both[0], both[0])} and --set {both[0]} both given")
    given.update(more)
    real = ", ".join(entry.settings()) or "none"
    for key, value in given.items():
        flag = OPTION_FLAGS.get(key) if key not in more else f"--set {key}"
        if key in entry.fixed and value != entry.fixed[key]:
            raise UsageError(f"{flag or key} does not apply to attack {entry.name!r}, which fixes "
                             f"{key}={entry.fixed[key]!r}; its settings: {real}")
        if key not in entry.fixed and not entry.takes(key):
            raise UsageError(f"{flag or key} does not apply to attack {entry.name!r}; its settings: {real}")
    for key, value in (defaults or {}).items():
        if key not in given and entry.takes(key):
            given[key] = value
    try:
        attack = entry.create(**given)
        attack._check_settings()
    except (TypeError, ValueError) as e:
        raise UsageError(f"attack {entry.name!r}: {e}") from None
    if norm is not None and norm not in attack.norms:
        raise UsageError(f"--norm {norm} does not apply to attack {entry.name!r}; it takes "
                         f"--norm {' or '.join(attack.norms)}")
    return attack

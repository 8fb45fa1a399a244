"""The attack set of the destruction-rate experiment, shared by the CLI, the lecture and bench."""

from __future__ import annotations

from typing import Any

from advlab.attacks import Attack, create_attack
from advlab.transforms import Transform, print_and_photograph

__all__ = ["PHYSICAL_ATTACKS", "physical_attacks"]

#: attack names accepted by :func:`physical_attacks`
PHYSICAL_ATTACKS = ("fgsm", "bim", "illc", "eot")


def physical_attacks(names: list[str] | tuple[str, ...] = PHYSICAL_ATTACKS, *, steps: int = 10,
                     eot_samples: int = 8, eot_transform: Transform | None = None,
                     eot_loss: str = "ce", eot_steps: int | None = None) -> dict[str, Attack]:
    """FGSM, BIM, ILLC (Kurakin et al. 2016) and EOT (Athalye et al. 2018) by name.

    Args:
        names: subset of :data:`PHYSICAL_ATTACKS`, in table order.
        steps: iterations of BIM, ILLC and EOT (step ``2.5 eps / steps``).
        eot_samples: transformations per EOT gradient.
        eot_transform: the distribution EOT optimises over (default: the
            print-and-photograph preset).
        eot_loss: EOT objective (``"ce" | "cw" | "dlr"``).
        eot_steps: iterations of EOT (default ``steps``); its step is
            ``2.5 eps / eot_steps``.

    Returns:
        name -> attack.
    """
    settings: dict[str, dict[str, Any]] = {
        "fgsm": {}, "bim": {"steps": steps}, "illc": {"steps": steps},
        "eot": {"transform": eot_transform or print_and_photograph(), "samples": eot_samples,
                "steps": steps if eot_steps is None else eot_steps, "loss": eot_loss}}
    out: dict[str, Attack] = {}
    for n in names:
        key = n.strip().lower()
        if key not in settings:
            raise ValueError(f"unknown attack {n!r}; use some of {list(PHYSICAL_ATTACKS)}")
        out[key] = create_attack(key, **settings[key])
    return out
